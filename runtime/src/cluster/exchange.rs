//! The pod's Arrow Flight endpoint and the data links between subtasks in different pods.
//!
//! A data link replaces one in-memory channel: the sending pod drains the channel's receiver
//! into a `DoExchange` stream; the receiving pod feeds what arrives into the channel's
//! sender. Records and signals share the stream, so barrier alignment sees exactly what it
//! sees in one process. Flow control is by credit ([`Credit`]): the receiver grants one per
//! message handed to its bounded channel, the sender never has more than [`CREDITS`]
//! messages unanswered, so a slow subtask holds its producers back with bounded memory on
//! both sides.
//!
//! Every call presents the job's token (`authorization: Bearer`), and names its incarnation
//! and generation: a pod of another start, or a zombie of an older generation, is refused.
//! HTTP/2 keep-alives turn a stopped or unreachable peer into a broken link within
//! [`KEEPALIVE`] + [`KEEPALIVE_TIMEOUT`], and a broken link fails the incarnation.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{BoxStream, Stream, StreamExt};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::Pods;
use super::wire::{self, BatchEncoder, Credit, Decoder, Hello, Signal};
use crate::checkpoint::messages::TaskEvent;
use crate::control::metrics::Metrics;
use crate::error::{Error, Result};
use crate::task::Message;

/// Messages a data link may have unanswered; with the channel on each side, what one link
/// can hold is bounded by this many batches plus two channels' worth.
pub const CREDITS: u32 = 8;

/// How often an idle HTTP/2 connection is pinged.
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// How long a ping may go unanswered before the connection (and every link on it) is broken.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message accepted: a batch of wide rows; beyond it a link fails naming the size.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

type Frames = Pin<Box<dyn Stream<Item = std::result::Result<FlightData, Status>> + Send>>;

/// A pod that connected to the coordinator's control link.
pub struct Joined {
    /// Its pod index.
    pub pod: u32,
    /// What it sends.
    pub incoming: Streaming<FlightData>,
    /// What it is sent.
    pub outgoing: mpsc::Sender<std::result::Result<FlightData, Status>>,
}

/// Channels of this pod's subtasks that wait for a data link from another pod.
#[derive(Default)]
struct Inbound {
    channels: Mutex<HashMap<(u32, u32, u32), mpsc::Sender<Message>>>,
    registered: Notify,
}

/// This pod's exchange: the Flight server, and what it hands to the job.
#[derive(Clone)]
pub struct Exchange {
    pods: Arc<Pods>,
    inbound: Arc<Inbound>,
    generation: watch::Sender<Option<u64>>,
    joined: mpsc::Sender<Joined>,
    events: mpsc::UnboundedSender<TaskEvent>,
    metrics: Arc<Metrics>,
}

impl Exchange {
    /// Listen on `pods.listen`. Pods that join the control link arrive on the returned
    /// receiver (only pod 0 accepts them).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(
        pods: Arc<Pods>,
        events: mpsc::UnboundedSender<TaskEvent>,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, mpsc::Receiver<Joined>)> {
        let listener = tokio::net::TcpListener::bind(pods.listen)
            .await
            .map_err(|e| {
                Error::internal(format!(
                    "cannot listen for other pods on {}: {e}",
                    pods.listen
                ))
            })?;
        Ok(Self::serve_on(listener, pods, events, metrics))
    }

    /// Serve on a listener already bound to `pods.listen`: tests bind every pod's port
    /// before any pod starts, so no other test can take a port between choosing and binding.
    fn serve_on(
        listener: tokio::net::TcpListener,
        pods: Arc<Pods>,
        events: mpsc::UnboundedSender<TaskEvent>,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<Joined>) {
        let (joined, joins) = mpsc::channel(pods.count as usize + 1);
        let ex = Self {
            pods: Arc::clone(&pods),
            inbound: Arc::default(),
            generation: watch::Sender::new(None),
            joined,
            events,
            metrics,
        };
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = FlightServiceServer::new(ex.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(service);
        let events = ex.events.clone();
        tokio::spawn(async move {
            if let Err(e) = server.serve_with_incoming(incoming).await {
                let _ = events.send(TaskEvent::PodLost {
                    pod: pods.index,
                    error: Error::internal(format!("the exchange server stopped: {e}")),
                });
            }
        });
        tracing::info!(addr = %ex.pods.listen, pod = ex.pods.index, pods = ex.pods.count, "exchange listening");
        (ex, joins)
    }

    /// The incarnation's generation is known: data links of it may now be accepted.
    pub fn set_generation(&self, generation: u64) {
        self.generation.send_replace(Some(generation));
    }

    /// Feed what the link for `(edge, from, to)` brings into `tx`.
    pub fn expect(&self, edge: u32, from: u32, to: u32, tx: mpsc::Sender<Message>) {
        if let Ok(mut m) = self.inbound.channels.lock() {
            m.insert((edge, from, to), tx);
        }
        self.inbound.registered.notify_waiters();
    }

    /// Drain `rx` (the channel from subtask `from` to subtask `to` of shuffle `edge`) into a
    /// data link to pod `pod`. A link that cannot be opened or breaks fails the incarnation.
    pub fn send(
        &self,
        generation: u64,
        edge: u32,
        from: u32,
        to: u32,
        pod: u32,
        rx: mpsc::Receiver<Message>,
    ) {
        let hello = Hello::Data {
            incarnation: self.pods.incarnation.clone(),
            generation,
            pod: self.pods.index,
            edge,
            from,
            to,
        };
        let ex = self.clone();
        tokio::spawn(async move {
            if let Err(e) = ex.run_link(hello, pod, rx).await {
                let _ = ex.events.send(TaskEvent::PodLost {
                    pod,
                    error: Error::internal(format!(
                        "data link e{edge}: t{from} -> t{to} (pod {pod}): {e}"
                    )),
                });
            }
        });
    }

    /// A connection to pod `pod`, retried until it answers or the start-up wait runs out.
    ///
    /// # Errors
    /// The peer did not answer in time.
    pub async fn connect(&self, pod: u32) -> Result<FlightServiceClient<Channel>> {
        let peer = self
            .pods
            .peers
            .get(pod as usize)
            .ok_or_else(|| Error::internal(format!("no address for pod {pod}")))?;
        let endpoint = Endpoint::from_shared(format!("http://{peer}"))
            .map_err(|e| Error::internal(format!("pod {pod} address {peer}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let deadline = Instant::now() + crate::wait::limit();
        loop {
            match endpoint.connect().await {
                Ok(ch) => {
                    return Ok(FlightServiceClient::new(ch)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE));
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::internal(format!(
                        "pod {pod} at {peer} did not answer within {:?}: {e}",
                        crate::wait::limit()
                    )));
                }
                Err(e) => {
                    tracing::debug!(pod, peer = %peer, error = %e, "waiting for a pod");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Open a `DoExchange` link to pod `pod`: `hello` first, then `frames`.
    ///
    /// # Errors
    /// The peer is unreachable or refuses the link.
    pub async fn open(
        &self,
        pod: u32,
        hello: &Hello,
        frames: mpsc::Receiver<FlightData>,
    ) -> Result<Streaming<FlightData>> {
        let mut client = self.connect(pod).await?;
        let first = wire::hello(hello)?;
        let stream = futures::stream::iter(std::iter::once(first)).chain(Received(frames));
        let mut req = Request::new(stream);
        let bearer = format!("Bearer {}", self.pods.token)
            .parse()
            .map_err(|_| Error::internal("the exchange token is not a valid header value"))?;
        req.metadata_mut().insert("authorization", bearer);
        client
            .do_exchange(req)
            .await
            .map(Response::into_inner)
            .map_err(|s| Error::internal(format!("pod {pod} refused the link: {}", s.message())))
    }

    async fn run_link(
        &self,
        hello: Hello,
        pod: u32,
        mut rx: mpsc::Receiver<Message>,
    ) -> Result<()> {
        let (out, frames) = mpsc::channel::<FlightData>(2);
        let mut replies = self.open(pod, &hello, frames).await?;
        let mut credits = 0u32;
        let mut encoder = BatchEncoder::default();
        let gone = || Error::internal("the receiving pod closed the link");
        loop {
            // Credits are read as they come; a message is taken only while one is left.
            let m = tokio::select! {
                biased;
                reply = replies.message() => {
                    let reply = reply.map_err(status)?.ok_or_else(gone)?;
                    credits += wire::parse_meta::<Credit>(&reply.app_metadata)?.0;
                    continue;
                }
                m = rx.recv(), if credits > 0 => m,
            };
            let Some(m) = m else {
                // The sending subtask is gone without its end: its own failure is reported.
                return Ok(());
            };
            let end = matches!(m, Message::End);
            let frames = match &m {
                Message::Data(b) => encoder.encode(b)?,
                m => match Signal::of(m) {
                    Some(s) => vec![wire::meta(&s)?],
                    None => Vec::new(),
                },
            };
            for f in frames {
                self.metrics.exchange_sent.inc_by(wire::size(&f) as u64);
                out.send(f).await.map_err(|_| gone())?;
            }
            credits -= 1;
            if end {
                drop(out);
                // Wait for the receiver to close its side: then everything was handed over.
                while let Ok(Some(_)) = replies.message().await {}
                return Ok(());
            }
        }
    }

    fn authenticate<T>(&self, req: &Request<T>) -> std::result::Result<(), Status> {
        let expected = format!("Bearer {}", self.pods.token);
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            tracing::warn!(peer = ?req.remote_addr(), "refused an exchange call without this job's token");
            Err(Status::unauthenticated("wrong or missing exchange token"))
        }
    }

    /// The sender for a link of this incarnation, once this pod registered it.
    async fn take(
        &self,
        generation: u64,
        key: (u32, u32, u32),
    ) -> std::result::Result<mpsc::Sender<Message>, Status> {
        let deadline = tokio::time::Instant::now() + crate::wait::limit();
        let mut gen_rx = self.generation.subscribe();
        let mine = loop {
            if let Some(g) = *gen_rx.borrow_and_update() {
                break g;
            }
            if tokio::time::timeout_at(deadline, gen_rx.changed())
                .await
                .is_err()
            {
                return Err(Status::unavailable(
                    "this pod has not started its incarnation",
                ));
            }
        };
        if generation != mine {
            return Err(Status::permission_denied(format!(
                "generation {generation} is not this incarnation's ({mine})"
            )));
        }
        loop {
            let notified = self.inbound.registered.notified();
            if let Ok(mut m) = self.inbound.channels.lock()
                && let Some(tx) = m.remove(&key)
            {
                return Ok(tx);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Status::not_found(format!(
                    "no subtask here expects s{}: t{} -> t{}",
                    key.0, key.1, key.2
                )));
            }
        }
    }
}

fn status(s: Status) -> Error {
    Error::internal(format!("{}: {}", s.code(), s.message()))
}

/// A stream of what `rx` receives, until its senders are gone.
pub fn receiver<T: Send + 'static>(rx: mpsc::Receiver<T>) -> BoxStream<'static, T> {
    Received(rx).boxed()
}

struct Received<T>(mpsc::Receiver<T>);

impl<T> Stream for Received<T> {
    type Item = T;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// Hand what a data link brings to the subtask's channel, granting a credit for each.
async fn receive(
    ex: &Exchange,
    from_pod: u32,
    mut incoming: Streaming<FlightData>,
    tx: mpsc::Sender<Message>,
    replies: mpsc::Sender<std::result::Result<FlightData, Status>>,
) -> Result<()> {
    let mut decoder = Decoder::default();
    let credit = wire::meta(&Credit(1))?;
    let mut ended = false;
    loop {
        let f = match incoming.message().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(s) => {
                return Err(Error::internal(format!(
                    "data link from pod {from_pod}: {}",
                    s.message()
                )));
            }
        };
        ex.metrics.exchange_received.inc_by(wire::size(&f) as u64);
        let Some(m) = decoder.decode(&f)? else {
            continue;
        };
        ended = matches!(m, Message::End);
        if tx.send(m).await.is_err() {
            // The subtask is gone; its own failure is reported.
            return Ok(());
        }
        let _ = replies.send(Ok(credit.clone())).await;
    }
    if ended {
        Ok(())
    } else {
        Err(Error::internal(
            "the sending pod closed the link before its end",
        ))
    }
}

#[tonic::async_trait]
impl FlightService for Exchange {
    type HandshakeStream = BoxStream<'static, std::result::Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, std::result::Result<FlightInfo, Status>>;
    type DoGetStream = Frames;
    type DoPutStream = BoxStream<'static, std::result::Result<PutResult, Status>>;
    type DoExchangeStream = Frames;
    type DoActionStream = BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, std::result::Result<ActionType, Status>>;

    async fn do_exchange(
        &self,
        req: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        self.authenticate(&req)?;
        let remote = req.remote_addr();
        let mut incoming = req.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty link"))?;
        let hello =
            wire::parse_hello(&first).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let incarnation = match &hello {
            Hello::Data { incarnation, .. } | Hello::Control { incarnation, .. } => incarnation,
        };
        if *incarnation != self.pods.incarnation {
            tracing::warn!(peer = ?remote, theirs = %incarnation, "refused a link from another incarnation");
            return Err(Status::permission_denied(format!(
                "incarnation {incarnation} is not this pod's"
            )));
        }
        match hello {
            Hello::Data {
                generation,
                pod,
                edge,
                from,
                to,
                ..
            } => {
                let tx = self.take(generation, (edge, from, to)).await?;
                let (replies, out) = mpsc::channel(CREDITS as usize + 1);
                let initial =
                    wire::meta(&Credit(CREDITS)).map_err(|e| Status::internal(e.to_string()))?;
                let _ = replies.send(Ok(initial)).await;
                let ex = self.clone();
                tokio::spawn(async move {
                    // A panic while decoding (a bug, or input Arrow trusts) must still fail
                    // the incarnation, not leave the link silently dead.
                    let link = ex.clone();
                    let received =
                        tokio::spawn(
                            async move { receive(&link, pod, incoming, tx, replies).await },
                        )
                        .await
                        .unwrap_or_else(|e| Err(Error::internal(format!("panicked: {e}"))));
                    if let Err(e) = received {
                        let _ = ex.events.send(TaskEvent::PodLost {
                            pod,
                            error: Error::internal(format!(
                                "data link e{edge}: t{from} -> t{to}: {e}"
                            )),
                        });
                    }
                });
                Ok(Response::new(receiver(out)))
            }
            Hello::Control { pod, .. } => {
                if !self.pods.is_coordinator() {
                    return Err(Status::failed_precondition(
                        "only pod 0 coordinates the job",
                    ));
                }
                let (outgoing, out) = mpsc::channel(1024);
                self.joined
                    .send(Joined {
                        pod,
                        incoming,
                        outgoing,
                    })
                    .await
                    .map_err(|_| Status::unavailable("the job is no longer accepting pods"))?;
                Ok(Response::new(receiver(out)))
            }
        }
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn do_get(
        &self,
        _: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("only DoExchange"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use std::net::SocketAddr;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// `n` pods' ports, bound and held until each pod serves on its own: a port chosen and
    /// released would be free for a parallel test to take.
    struct Ports {
        peers: Vec<SocketAddr>,
        held: Vec<Option<std::net::TcpListener>>,
    }

    impl Ports {
        fn bind(n: usize) -> Self {
            let held: Vec<_> = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            Self {
                peers: held.iter().map(|l| l.local_addr().unwrap()).collect(),
                held: held.into_iter().map(Some).collect(),
            }
        }

        fn pods(&self, index: u32) -> Pods {
            Pods {
                index,
                count: self.peers.len() as u32,
                peers: self.peers.iter().map(ToString::to_string).collect(),
                listen: self.peers[index as usize],
                token: "a-test-token-0123456789".into(),
                incarnation: "t".into(),
            }
        }

        fn serve(
            &mut self,
            index: u32,
            events: mpsc::UnboundedSender<TaskEvent>,
        ) -> (Exchange, mpsc::Receiver<Joined>) {
            let held = self.held[index as usize].take().unwrap();
            held.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(held).unwrap();
            let pods = Arc::new(self.pods(index));
            Exchange::serve_on(listener, pods, events, Arc::new(Metrics::new(Vec::new())))
        }
    }

    fn pod(ports: &mut Ports, index: u32) -> (Exchange, mpsc::UnboundedReceiver<TaskEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let (ex, _) = ports.serve(index, events);
        ex.set_generation(4);
        (ex, rx)
    }

    fn batch(i: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![i; 1000]))]).unwrap()
    }

    /// A consumer that takes nothing holds its producer back after the credits and the two
    /// channels are full; once it drains, every message arrives, in order, ending with End.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_consumer_bounds_what_the_producer_hands_over() {
        let mut ports = Ports::bind(2);
        let (sender, _e0) = pod(&mut ports, 0);
        let (receiver, _e1) = pod(&mut ports, 1);
        let (into_link, from_task) = mpsc::channel(1);
        sender.send(4, 1, 0, 0, 1, from_task);
        let (to_task, mut task_input) = mpsc::channel(1);
        receiver.expect(1, 0, 0, to_task);
        let handed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let producer = {
            let handed = Arc::clone(&handed);
            tokio::spawn(async move {
                for i in 0..200 {
                    into_link.send(Message::Data(batch(i))).await.unwrap();
                    handed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                into_link.send(Message::End).await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stalled_at = handed.load(std::sync::atomic::Ordering::SeqCst);
        // Credits, the receiving channel, the link's send buffer and the producer's channel.
        let bound = u64::from(CREDITS) + 1 + 2 + 1 + 1;
        assert!(
            stalled_at <= bound,
            "the producer handed over {stalled_at} messages to a stalled consumer (bound {bound})"
        );
        assert!(
            stalled_at >= u64::from(CREDITS),
            "only {stalled_at} handed over"
        );
        for i in 0..200 {
            match task_input.recv().await.unwrap() {
                Message::Data(b) => assert_eq!(b, batch(i)),
                other => panic!("message {i}: {other:?}"),
            }
        }
        assert!(matches!(task_input.recv().await, Some(Message::End)));
        producer.await.unwrap();
    }

    /// A link with the wrong token or of another generation is refused before any data moves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_without_the_token_or_of_another_generation_are_refused() {
        let mut ports = Ports::bind(2);
        let (sender, mut events) = pod(&mut ports, 0);
        let (receiver, _e1) = pod(&mut ports, 1);
        let (to_task, _task_input) = mpsc::channel(1);
        receiver.expect(1, 0, 0, to_task);
        let (_into_link, from_task) = mpsc::channel(1);
        sender.send(3, 1, 0, 0, 1, from_task);
        match events.recv().await {
            Some(TaskEvent::PodLost { pod: 1, error }) => {
                assert!(
                    error
                        .to_string()
                        .contains("generation 3 is not this incarnation's (4)"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut impostor = sender.clone();
        impostor.pods = Arc::new(Pods {
            token: "not-the-token-0123456789".into(),
            ..(*sender.pods).clone()
        });
        let (_into_link, from_task) = mpsc::channel(1);
        impostor.send(4, 1, 0, 0, 1, from_task);
        match events.recv().await {
            Some(TaskEvent::PodLost { error, .. }) => {
                assert!(
                    error
                        .to_string()
                        .contains("wrong or missing exchange token"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Whatever a peer holding the token sends on a data link (bytes that are not Arrow IPC,
    /// a batch before its schema, a batch whose body was cut, metadata that is not a signal,
    /// a message over the size limit) ends that link with a pod-lost error naming the link
    /// and what was wrong: no panic, no record handed to the subtask, no unbounded buffer
    /// (the size limit is checked on the length prefix, before the message is read).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_frames_on_a_data_link_fail_that_link_naming_it() {
        let mut encoder = BatchEncoder::default();
        let frames = encoder.encode(&batch(7)).unwrap();
        let (schema, data) = (frames[0].clone(), frames[1].clone());
        let cut = FlightData {
            data_body: data.data_body.slice(..data.data_body.len() / 2),
            ..data.clone()
        };
        let oversize = FlightData {
            data_body: vec![0u8; MAX_MESSAGE + 1].into(),
            ..FlightData::default()
        };
        let cases: Vec<(&str, Vec<FlightData>, &str)> = vec![
            (
                "garbage",
                vec![FlightData {
                    data_header: b"definitely not a flatbuffer".to_vec().into(),
                    ..FlightData::default()
                }],
                "malformed Arrow IPC",
            ),
            (
                "batch first",
                vec![data.clone()],
                "a batch before its schema",
            ),
            ("cut body", vec![schema, cut], "data link e0: t0 -> t0"),
            (
                "bad signal",
                vec![FlightData {
                    app_metadata: b"{not json".to_vec().into(),
                    ..FlightData::default()
                }],
                "data link e0: t0 -> t0",
            ),
            ("oversize", vec![oversize], "message length too large"),
        ];
        for (what, frames, want) in cases {
            let mut ports = Ports::bind(2);
            let (sender, _e0) = pod(&mut ports, 0);
            let (receiver, mut events) = pod(&mut ports, 1);
            let (to_task, mut task_input) = mpsc::channel(8);
            receiver.expect(0, 0, 0, to_task);
            let hello = Hello::Data {
                incarnation: "t".into(),
                generation: 4,
                pod: 0,
                edge: 0,
                from: 0,
                to: 0,
            };
            // A client without the size limit, so the receiving side's limit is what acts.
            let (tx, rx) = mpsc::channel(8);
            let mut client = sender
                .connect(1)
                .await
                .unwrap()
                .max_encoding_message_size(usize::MAX);
            let stream = futures::stream::iter(std::iter::once(wire::hello(&hello).unwrap()))
                .chain(Received(rx));
            let mut req = Request::new(stream);
            req.metadata_mut().insert(
                "authorization",
                "Bearer a-test-token-0123456789".parse().unwrap(),
            );
            let call = tokio::spawn(async move { client.do_exchange(req).await });
            for f in frames {
                let _ = tx.send(f).await;
            }
            let event = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
            match event {
                Ok(Some(TaskEvent::PodLost { pod: 0, error })) => {
                    let e = error.to_string();
                    assert!(e.contains(want), "{what}: {e}");
                    assert!(e.contains("data link e0: t0 -> t0"), "{what}: {e}");
                }
                other => panic!("{what}: {other:?}"),
            }
            assert!(
                !matches!(task_input.try_recv(), Ok(Message::Data(_))),
                "{what}: a record reached the subtask"
            );
            drop(tx);
            call.abort();
        }
    }

    /// Two control links claiming the same pod index (a second join) stop the start naming
    /// the index, instead of silently replacing the pod that joined first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_join_for_the_same_pod_stops_the_start() {
        let mut ports = Ports::bind(3);
        let (events, _rx) = mpsc::unbounded_channel();
        let (coordinator, mut joins) = ports.serve(0, events);
        let (joiner, _e) = pod(&mut ports, 1);
        let hello = Hello::Control {
            incarnation: "t".into(),
            pod: 1,
        };
        let mut calls = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::channel(1);
            let link = joiner.clone();
            let hello = hello.clone();
            calls.push((
                tx,
                tokio::spawn(async move { link.open(0, &hello, rx).await }),
            ));
        }
        let e = super::super::link::accept(&mut joins, 3)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("pod 1 joined twice"), "{e}");
        drop(coordinator);
        for (_, c) in calls {
            c.abort();
        }
    }
}
