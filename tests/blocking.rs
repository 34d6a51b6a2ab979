//! A handler marked `blocking` blocks a thread of tokio's blocking pool, not
//! a worker: on a runtime with a single worker, another client is still served
//! while it blocks. (Without `blocking` the fast client's read times out.)

mod support;

use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;

use flexi_socket::{Classifier, Connection, FlexiSocket, on_message};
use support::{LineClient, start};

#[derive(Classifier)]
enum Kind {
    #[client_type = "slow"]
    #[classify(prefix = "slow")]
    Slow,
    #[classify(default)]
    Fast,
}

/// Releases the blocking handler; the test holds the sender.
static RELEASE: Mutex<Option<std_mpsc::Receiver<()>>> = Mutex::new(None);

#[on_message(client_type = "slow", blocking)]
async fn slow(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    let release = RELEASE.lock().unwrap().take().expect("one slow message");
    // Blocks this thread outright, as synchronous work would.
    release.recv().expect("released by the test");
    conn.send(format!("finally {msg}")).await
}

#[on_message]
async fn fast(conn: Connection, msg: String) -> flexi_socket::Result<()> {
    conn.send(msg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn blocking_handler_does_not_stall_other_clients() {
    let (release, released) = std_mpsc::channel();
    *RELEASE.lock().unwrap() = Some(released);
    let running = start(FlexiSocket::server("127.0.0.1:0").classifier::<Kind>()).await;

    let mut slow_client = LineClient::connect(running.addr).await;
    slow_client.send_line("slow job").await;
    // The fast client uses blocking std I/O with its own timeout on its own
    // thread: if the runtime's only worker were stalled, this fails instead of hanging.
    let addr = running.addr;
    let fast = std::thread::spawn(move || {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(support::WAIT)).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut replies = Vec::new();
        for line in ["quick", "again"] {
            (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            reader
                .read_line(&mut reply)
                .expect("served while the slow handler blocks");
            replies.push(reply);
        }
        replies
    });
    let replies = fast.join().expect("the fast client was served");
    assert_eq!(replies, ["quick\n", "again\n"]);

    release.send(()).unwrap();
    assert_eq!(slow_client.recv_line().await, "finally slow job");
    running.stop().await;
}
