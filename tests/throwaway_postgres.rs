//! The throwaway PostgreSQL server the Postgres tests and the perf tool use.

use humpyard::testing::ThrowawayPostgres;

#[test]
fn starts_restarts_and_cleans_up() {
    let mut server = ThrowawayPostgres::start().expect("a throwaway server");
    let query = |url: &str| -> i32 {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client.query_one("select 41 + 1", &[]).unwrap().get(0)
    };
    assert_eq!(query(&server.url()), 42);
    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    client
        .batch_execute("create table kept (n int); insert into kept values (7)")
        .unwrap();
    server.restart().unwrap();
    assert!(
        client.query_one("select 1", &[]).is_err(),
        "the restart cut the old connection"
    );
    let mut client = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    let kept: i32 = client.query_one("select n from kept", &[]).unwrap().get(0);
    assert_eq!(kept, 7, "data survives a restart");
    let url = server.url();
    drop(server);
    assert!(
        postgres::Client::connect(&url, postgres::NoTls).is_err(),
        "stopped on drop"
    );
}
