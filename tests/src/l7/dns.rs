//! A tiny DNS server on loopback (UDP): A records from a map, NXDOMAIN for
//! everything else. Runs on its own thread until dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

type Records = Arc<Mutex<HashMap<String, Ipv4Addr>>>;

pub struct FakeDns {
    addr: SocketAddr,
    records: Records,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// `Name.` → `name` (lower case, no trailing dot).
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl FakeDns {
    /// Serves on `ip:port` (UDP).
    pub fn start(addr: SocketAddr, records: &[(&str, Ipv4Addr)]) -> Result<Self> {
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding fake DNS on {addr}"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let records: Records =
            Arc::new(Mutex::new(records.iter().map(|(n, ip)| (normalize(n), *ip)).collect::<HashMap<_, _>>()));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (records, stop, queries) = (records.clone(), stop.clone(), queries.clone());
            std::thread::spawn(move || serve(socket, records, stop, queries))
        };
        Ok(Self { addr, records, queries, stop, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds or replaces an A record.
    pub fn set(&self, name: &str, ip: Ipv4Addr) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).insert(normalize(name), ip);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: UdpSocket, records: Records, stop: Arc<AtomicBool>, queries: Arc<AtomicUsize>) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        let Ok(request) = Message::from_vec(&buf[..n]) else { continue };
        queries.fetch_add(1, Ordering::Relaxed);
        let records = records.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(reply) = answer(&request, &records) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

fn answer(request: &Message, records: &HashMap<String, Ipv4Addr>) -> Option<Vec<u8>> {
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let mut known = false;
    for query in request.queries() {
        reply.add_query(query.clone());
        let name = normalize(&query.name().to_ascii());
        if let Some(ip) = records.get(&name) {
            known = true;
            if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
                reply.add_answer(Record::from_rdata(query.name().clone(), 5, RData::A(A(*ip))));
            }
        }
    }
    // A known name without an A answer (e.g. AAAA) is NOERROR with no data.
    reply.set_response_code(if known { ResponseCode::NoError } else { ResponseCode::NXDomain });
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut q = Message::new();
        q.set_id(7).add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        sock.send_to(&q.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[test]
    fn answers_known_names_and_nxdomain_otherwise() {
        let ip = crate::l7::net::unique_loopback_ip();
        let dns = FakeDns::start(SocketAddr::from((ip, 5353)), &[("db.example.test", ip)]).unwrap();
        let r = ask(dns.addr(), "DB.example.test.", RecordType::A);
        assert_eq!(r.id(), 7);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(r.answers()[0].data(), &RData::A(A(ip)));
        let r = ask(dns.addr(), "db.example.test.", RecordType::AAAA);
        assert_eq!((r.response_code(), r.answers().len()), (ResponseCode::NoError, 0));
        let r = ask(dns.addr(), "nope.example.test.", RecordType::A);
        assert_eq!(r.response_code(), ResponseCode::NXDomain);
        assert_eq!(dns.queries(), 3);
    }
}
