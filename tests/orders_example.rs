//! The orders example's application tested as a user would test theirs: orders injected
//! through the test kit's source, the warehouse replaced by fixtures keyed by each command's
//! hash. Each reservation is asked for once, across a restart that rewinds the checkpoint; a
//! refused one is parked (R-INT-2, R-INT-3, R-FT-4).

#[path = "../examples/orders/app.rs"]
mod app;
mod common;

use std::sync::Arc;
use std::time::Duration;

use app::{Order, Reservations, Reserve, PLACE, RESERVE};
use common::wait_until;
use humpyard::integration::testkit::{FixtureHandler, ManualSource};
use humpyard::integration::{Command, Integration, Routes};
use humpyard::store::{EventStore, InMemoryStore, ParkKind};
use humpyard::EngineConfig;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn order(n: u32) -> Order {
    Order {
        order: format!("order-{n}"),
        sku: "sku-1".to_owned(),
        qty: n,
    }
}

fn reserve(n: u32) -> Command {
    let o = order(n);
    Command::encode(
        RESERVE,
        &Reserve {
            order: o.order,
            sku: o.sku,
            qty: o.qty,
        },
    )
    .unwrap()
}

// proves R-INT-2 and R-INT-3 with the test kit: injected orders are placed, each placed order
// reserves its stock once (answered by a fixture), a restart from a rewound checkpoint asks
// for none again, and the order the fixture refuses is parked with the reason
#[test]
fn each_order_reserves_once_across_a_restart_and_a_refusal_is_parked() {
    let dir = std::env::temp_dir().join(format!("humpyard-orders-fixtures-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let warehouse = FixtureHandler::new(&dir);
    for n in 1..=3 {
        warehouse.record(&reserve(n), Ok(json!({ "reservation": n }))).unwrap();
    }
    warehouse
        .record(&reserve(4), Err("422 out of stock".to_owned()))
        .unwrap();

    let store: Arc<dyn EventStore> = Arc::new(InMemoryStore::new());
    let start = |source: ManualSource| {
        Integration::builder(
            Arc::clone(&store),
            "reservations",
            Reservations,
            Routes::new()
                .route(PLACE, app::place)
                .unwrap()
                .route(RESERVE, warehouse.clone())
                .unwrap(),
        )
        .source("storefront", source)
        .pipeline(|p| {
            p.engine(
                EngineConfig::default()
                    .workers(2)
                    .retry_backoff(Duration::from_millis(1)),
            )
            .max_attempts(2)
            .checkpoint_interval(Duration::from_millis(5))
        })
        .start()
        .unwrap()
    };
    let (source, injector) = ManualSource::new(2);
    let integration = start(source);
    for n in 1..=4 {
        injector.inject(Command::encode(PLACE, &order(n)).unwrap()).unwrap();
    }
    wait_until("four orders reserved or refused", || warehouse.received().len() == 5);
    wait_until("the refused order is parked", || {
        integration.pipeline().parked(0, 10).unwrap().len() == 1
    });
    let parked = integration.pipeline().parked(0, 10).unwrap();
    assert_eq!(
        (parked[0].stream.as_str(), parked[0].kind),
        ("order-4", ParkKind::Handler)
    );
    assert!(parked[0].message.contains("422 out of stock"), "{}", parked[0].message);
    integration.shutdown(WAIT);

    store.reset_checkpoint("reservations", 0).unwrap();
    let (source, _injector) = ManualSource::new(2);
    let integration = start(source);
    let end = store.read_all(0, usize::MAX).unwrap().last().unwrap().position;
    assert!(integration.pipeline().wait_for(end, WAIT));
    assert_eq!(integration.stats().skipped, 3, "{:?}", integration.stats());
    integration.shutdown(WAIT);
    for n in 1..=3 {
        assert_eq!(warehouse.count(&reserve(n)), 1, "order {n} reserved once");
    }
    assert_eq!(
        warehouse.count(&reserve(4)),
        2,
        "the refused order: two attempts, then parked"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
