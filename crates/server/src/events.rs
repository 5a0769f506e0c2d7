//! SubscribeToShard's response body: the events the engine's subscription
//! task sends (`sluice_streams::fanout`), encoded as event-stream messages
//! when the connection takes them, counted as bytes out.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use crate::state::State;

#[derive(Debug)]
pub struct EventBody {
    rx: mpsc::Receiver<sluice_streams::fanout::Event>,
    state: Arc<State>,
    /// The request came as CBOR: payloads are CBOR too.
    cbor: bool,
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let cbor = self.cbor;
        self.rx.poll_recv(cx).map(|m| {
            m.map(|event| {
                let b = crate::encode::event(event, cbor);
                self.state
                    .metrics
                    .bytes_out
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Frame::data(b))
            })
        })
    }
}

/// Starts pushing events for `sub`; the body ends when the subscription does.
pub fn start(
    state: Arc<State>,
    sub: sluice_streams::fanout::Subscription,
    cbor: bool,
) -> EventBody {
    let rx = sluice_streams::fanout::start(state.engine.clone(), sub);
    EventBody { rx, state, cbor }
}
