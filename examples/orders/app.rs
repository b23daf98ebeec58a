//! The orders example's application: what a service would write. Shared by
//! `examples/orders.rs` (against a simulated warehouse) and `tests/orders_example.rs` (against
//! the test kit's fixtures and injectable source).
//!
//! - Inbound: the storefront's orders arrive as `order.place` commands; its handler appends a
//!   `placed` event to the order's stream.
//! - Outbound: each `placed` event causes one `inventory.reserve` command; its handler calls the
//!   warehouse with the effect's idempotency key and appends `stock-reserved` to the order's
//!   stream (ids derived from the key: a retry appends nothing twice).

#![allow(dead_code)]

use humpyard::integration::{BoxError, Command, Effect, Reactor};
use humpyard::store::{ExpectedVersion, NewEvent, RecordedEvent};
use humpyard::StreamId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An order, as the storefront sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order: String,
    pub sku: String,
    pub qty: u32,
}

/// What the warehouse is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    pub order: String,
    pub sku: String,
    pub qty: u32,
}

pub const PLACE: &str = "order.place";
pub const RESERVE: &str = "inventory.reserve";

/// `order.place`: the order becomes a `placed` event on its own stream.
///
/// Errors go up as they are (`?` into a [`BoxError`]), each with its cause as its source: a
/// parked command's message then holds the whole chain.
pub fn place(command: &Command, effect: &Effect<'_>) -> Result<Value, BoxError> {
    let order: Order = command.decode()?;
    let stream = StreamId::new(&order.order)?;
    let placed = NewEvent::encode("placed", &order)?;
    let appended = effect.append(&stream, ExpectedVersion::NoStream, vec![placed])?;
    Ok(serde_json::json!({ "position": appended.last_position }))
}

/// The order's state: whether its stock is reserved.
#[derive(Debug, Default)]
pub struct OrderState {
    pub placed: Option<Order>,
    pub reserved: bool,
}

/// Reacts to a placed order by reserving its stock, once.
pub struct Reservations;

impl Reactor for Reservations {
    type State = OrderState;

    fn init(&self, _stream: &StreamId) -> OrderState {
        OrderState::default()
    }

    fn apply(&self, state: &mut OrderState, event: &RecordedEvent) {
        match event.event_type.as_str() {
            "placed" => state.placed = event.decode().ok(),
            "stock-reserved" => state.reserved = true,
            _ => {}
        }
    }

    fn react(&self, state: &OrderState, event: &RecordedEvent) -> Vec<Command> {
        if event.event_type != "placed" || state.reserved {
            return Vec::new();
        }
        let Ok(order) = event.decode::<Order>() else {
            return Vec::new();
        };
        let reserve = Reserve {
            order: order.order,
            sku: order.sku,
            qty: order.qty,
        };
        vec![Command::encode(RESERVE, &reserve).expect("a valid command")]
    }
}

/// After the warehouse said yes: `stock-reserved` on the order's stream.
pub fn record_reservation(effect: &Effect<'_>, reserve: &Reserve, answer: &Value) -> Result<(), BoxError> {
    let stream = StreamId::new(&reserve.order)?;
    let event = NewEvent::new("stock-reserved", serde_json::json!({ "warehouse": answer }));
    effect.append(&stream, ExpectedVersion::Any, vec![event])?;
    Ok(())
}
