//! Command-line flags: `--name value` pairs after the subcommand, each taken once by the
//! subcommand that knows it; anything left over is an error.

use std::collections::BTreeMap;
use std::str::FromStr;

/// The flags of one command line.
#[derive(Debug)]
pub struct Flags(BTreeMap<String, String>);

impl Flags {
    /// Reads `--name value` pairs (and `--name` alone for switches, given as `"true"`).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, String> {
        let mut map = BTreeMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected a --flag, got {arg:?}"))?
                .to_owned();
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next().expect("peeked"),
                _ => "true".to_owned(),
            };
            if map.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Flags(map))
    }

    /// Takes `--name` as a `T`, or `default` when absent.
    pub fn take<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.remove(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
        }
    }

    /// Takes `--name` as a comma-separated list of `T`.
    pub fn take_list<T: FromStr + Clone>(&mut self, name: &str, default: &[T]) -> Result<Vec<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.remove(name) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|item| item.trim().parse().map_err(|e| format!("--{name} {item:?}: {e}")))
                .collect(),
        }
    }

    /// Whether `--name` was given (not taken: a `take` still reads it).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Takes `--name` as an optional string.
    pub fn take_opt(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Fails on flags nobody took.
    pub fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(format!("unknown flag --{name} (see --help)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &str) -> Flags {
        Flags::parse(s.split_whitespace().map(str::to_owned)).unwrap()
    }

    #[test]
    fn values_lists_switches_and_leftovers() {
        let mut f = flags("--rate 50000 --streams 1,1000 --json out.json --quiet");
        assert_eq!(f.take("rate", 0u64).unwrap(), 50_000);
        assert_eq!(f.take_list("streams", &[7u64]).unwrap(), vec![1, 1000]);
        assert_eq!(f.take_list("producers", &[2usize]).unwrap(), vec![2]);
        assert_eq!(f.take_opt("json").as_deref(), Some("out.json"));
        assert!(f.take("quiet", false).unwrap());
        f.finish().unwrap();
        let mut f = flags("--rate fast");
        assert!(f.take("rate", 0u64).is_err());
        assert!(flags("--bogus 1").finish().is_err());
        assert!(Flags::parse(["--a".into(), "1".into(), "--a".into(), "2".into()]).is_err());
    }
}
