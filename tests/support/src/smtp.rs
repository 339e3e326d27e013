//! An SMTP server inside the test: speaks just enough SMTP for a mail client (no extensions, no
//! STARTTLS, no authentication) and keeps every mail it was sent, until dropped with the
//! process. Its answers to `MAIL FROM` can be scripted, to test transient and permanent
//! failures.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a session waits for the client's next line before it gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One mail transaction as the server saw it: from `MAIL FROM` to the end of `DATA`, or to a
/// refused `MAIL FROM` (then `data` is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// The sender as the client wrote it after `MAIL FROM:`, e.g. `<alerts@example.com>`.
    pub from: String,
    /// The recipients as the client wrote them after `RCPT TO:`, in order.
    pub to: Vec<String>,
    /// The message: headers and body, lines ending in `\r\n`, dots unstuffed.
    pub data: String,
}

/// A running server on a free loopback port.
#[derive(Debug, Clone)]
pub struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    /// Starts a server that accepts every mail, on a thread of its own (and one a session).
    pub fn start() -> SmtpServer {
        SmtpServer::with_replies(&[])
    }

    /// Starts a server that answers the first `MAIL FROM`s with `replies`, in order (e.g.
    /// `"451 4.3.0 try again later"`), and `250 OK` once they are used up.
    pub fn with_replies(replies: &[&str]) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let replies: VecDeque<String> = replies.iter().map(|r| r.to_string()).collect();
        let replies = Arc::new(Mutex::new(replies));
        let mails = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&mails);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (replies, keep) = (Arc::clone(&replies), Arc::clone(&keep));
                // A session of its own: a client that keeps a connection open holds no other.
                std::thread::spawn(move || session(conn, &replies, &keep));
            }
        });
        SmtpServer { port, mails }
    }

    /// The port it listens on, at `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mails received so far, in the order their transactions ended.
    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One SMTP session on `conn`, until `QUIT`, the end of the connection or an error. Each mail
/// is added to `mails` before the client gets its answer, so a client that was answered finds
/// its mail there.
fn session(
    conn: TcpStream,
    replies: &Mutex<VecDeque<String>>,
    mails: &Mutex<Vec<Mail>>,
) -> Option<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    let mut out = conn.try_clone().ok()?;
    let mut reader = BufReader::new(conn);
    // The transaction under way, from an accepted `MAIL FROM`.
    let mut mail: Option<Mail> = None;
    out.write_all(b"220 test ESMTP\r\n").ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return Some(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        // The argument after a command, in the client's own case.
        let arg = |command: &str| line[command.len()..].trim().to_owned();
        let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250 test".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            let reply = lock(replies)
                .pop_front()
                .unwrap_or_else(|| "250 OK".to_owned());
            let m = Mail {
                from: arg("MAIL FROM:"),
                ..Mail::default()
            };
            if reply.starts_with('2') {
                mail = Some(m);
            } else {
                lock(mails).push(m);
            }
            reply
        } else if upper.starts_with("RCPT TO:") {
            match &mut mail {
                Some(m) => {
                    m.to.push(arg("RCPT TO:"));
                    "250 OK".to_owned()
                }
                None => "503 MAIL FROM first".to_owned(),
            }
        } else if upper == "DATA" {
            let Some(mut m) = mail.take() else {
                write!(out, "503 MAIL FROM first\r\n").ok()?;
                continue;
            };
            out.write_all(b"354 go on\r\n").ok()?;
            loop {
                let mut data = String::new();
                if reader.read_line(&mut data).ok()? == 0 {
                    return None;
                }
                if data.trim_end() == "." {
                    break;
                }
                m.data.push_str(data.strip_prefix('.').unwrap_or(&data));
            }
            lock(mails).push(m);
            "250 queued".to_owned()
        } else if upper == "RSET" {
            mail = None;
            "250 OK".to_owned()
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n").ok()?;
            return Some(());
        } else {
            "250 OK".to_owned()
        };
        write!(out, "{reply}\r\n").ok()?;
    }
}
