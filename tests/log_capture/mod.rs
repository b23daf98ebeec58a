//! A logger for tests: records every log line as its message plus `key=value` fields, as a
//! structured sink would receive them (R-SEC-3 checks read it).

use std::sync::Mutex;

use log::kv::{Key, Value, VisitSource};

/// Every line logged so far.
pub struct Capture(pub Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        struct Fields(String);
        impl<'kvs> VisitSource<'kvs> for Fields {
            fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        let mut fields = Fields(String::new());
        record.key_values().visit(&mut fields).unwrap();
        self.0.lock().unwrap().push(format!("{}{}", record.args(), fields.0));
    }
    fn flush(&self) {}
}

/// The test binary's logger.
pub static LOG: Capture = Capture(Mutex::new(Vec::new()));

/// Installs [`LOG`] (once per test binary) and logs everything.
pub fn install() {
    let _ = log::set_logger(&LOG);
    log::set_max_level(log::LevelFilter::Trace);
}
