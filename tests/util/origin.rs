//! A small HTTP/1.1 origin server for the client tests, on plain threads
//! (`#[path = "util/origin.rs"] mod origin;`):
//! one thread per connection, a handler that writes whatever bytes a test needs
//! (well-formed or not), and counters of connections and requests on the server
//! side. Loopback only; every socket has a read timeout so nothing hangs.
#![allow(dead_code)] // each test file uses a different part

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a server connection waits for the next request before closing.
pub const SERVER_IDLE: Duration = Duration::from_secs(10);

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Which accepted connection it came on (1-based).
    pub conn: usize,
    /// Its index on that connection (0-based).
    pub nth_on_conn: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the connection does after the handler wrote its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepOpen,
    Close,
}

type Handler = dyn Fn(&Request, &mut dyn Write) -> io::Result<Next> + Send + Sync;
type Wrap = dyn Fn(TcpStream) -> io::Result<Box<dyn ReadWrite>> + Send + Sync;

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// A running test server; stops accepting when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves plain HTTP with `handler`.
    pub fn start<H>(handler: H) -> TestServer
    where
        H: Fn(&Request, &mut dyn Write) -> io::Result<Next> + Send + Sync + 'static,
    {
        TestServer::start_wrapped(Arc::new(|s| Ok(Box::new(s) as Box<dyn ReadWrite>)), handler)
    }

    /// Serves with `handler` over whatever `wrap` makes of each accepted stream (TLS).
    pub fn start_wrapped<H>(wrap: Arc<Wrap>, handler: H) -> TestServer
    where
        H: Fn(&Request, &mut dyn Write) -> io::Result<Next> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let (accepted, requests, stop) = (accepted.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let (handler, requests, wrap) = (handler.clone(), requests.clone(), wrap.clone());
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(SERVER_IDLE));
                        let _ = stream.set_nodelay(true);
                        if let Ok(stream) = wrap(stream) {
                            let _ = serve_conn(stream, conn, &*handler, &requests);
                        }
                    });
                }
            })
        };
        TestServer {
            addr,
            accepted,
            requests,
            stop,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many times each path was requested.
    pub fn hits(&self) -> HashMap<String, usize> {
        let mut hits = HashMap::new();
        for r in self.requests.lock().unwrap().iter() {
            *hits.entry(r.path.clone()).or_insert(0) += 1;
        }
        hits
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(
    stream: Box<dyn ReadWrite>,
    conn: usize,
    handler: &Handler,
    requests: &Mutex<Vec<Request>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    for nth_on_conn in 0.. {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut field = String::new();
            reader.read_line(&mut field)?;
            let field = field.trim_end();
            if field.is_empty() {
                break;
            }
            if let Some((n, v)) = field.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut request = Request {
            method,
            path,
            headers,
            body: Vec::new(),
            conn,
            nth_on_conn,
        };
        let length: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
        requests.lock().unwrap().push(request.clone());
        let out = reader.get_mut();
        let next = handler(&request, out)?;
        out.flush()?;
        if next == Next::Close {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes a complete response with a `Content-Length`.
pub fn respond(out: &mut dyn Write, status: u16, extra: &[(&str, &str)], body: &[u8]) -> io::Result<Next> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    Ok(Next::KeepOpen)
}

/// Writes `bytes` as they are (for malformed responses).
pub fn raw(out: &mut dyn Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// A URL on 127.0.0.1 where nothing listens ([`crate::util::refused_addr`]).
pub fn refused_url() -> String {
    format!("http://{}/", crate::util::refused_addr())
}
