//! An HTTP receiver inside the test: answers 200 to every request and keeps the JSON bodies it
//! was sent (alert notifications, say), until dropped with the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A running receiver on a free loopback port.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    /// Starts it on a thread of its own.
    pub fn start() -> Webhook {
        Webhook::failing_first(0)
    }

    /// As [`start`](Self::start), answering the first `n` requests `503 Service Unavailable`
    /// (their bodies are kept too): a receiver that a sender must retry.
    pub fn failing_first(n: usize) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("its address")
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for (k, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let Ok(read) = conn.try_clone() else { continue };
                let mut reader = BufReader::new(read);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    keep.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                }
                let status = if k < n {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Webhook { url, bodies }
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JSON bodies received so far, in order.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
