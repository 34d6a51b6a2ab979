//! The addresses builders take, checked where the configuration is (`bind`,
//! `spawn`, `connect`): a syntactically impossible address fails at once,
//! saying what is wrong, instead of on every (re)connect attempt. Whether a
//! host name resolves is left to the connect or bind itself: DNS may answer
//! later.

use crate::error::{Error, Result};
use crate::peer_addr::UNIX_PREFIX;

/// Which forms of address an endpoint takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepts {
    /// `unix:PATH`.
    unix: bool,
    /// `systemd` and `systemd:N` (a socket handed in).
    systemd: bool,
    /// A server: port 0 is any free port (a client cannot connect to it), and
    /// a bare port most likely meant to listen on every interface.
    listens: bool,
}

impl Accepts {
    /// A TCP (or TLS) client.
    pub(crate) const TCP_CLIENT: Accepts = Accepts {
        unix: cfg!(unix),
        systemd: false,
        listens: false,
    };
    /// A UDP client.
    pub(crate) const UDP_CLIENT: Accepts = Accepts {
        unix: false,
        systemd: false,
        listens: false,
    };
    /// A TCP, TLS or Unix server.
    pub(crate) const STREAM_SERVER: Accepts = Accepts {
        unix: cfg!(unix),
        systemd: true,
        listens: true,
    };
    /// A UDP server.
    pub(crate) const UDP_SERVER: Accepts = Accepts {
        unix: false,
        systemd: true,
        listens: true,
    };

    /// The forms, as the error lists them.
    fn expected(self) -> &'static str {
        match (self.unix, self.systemd) {
            (true, true) => "host:port, [IPv6]:port, unix:PATH or systemd[:N]",
            (true, false) => "host:port, [IPv6]:port or unix:PATH",
            (false, true) => "host:port, [IPv6]:port or systemd[:N]",
            (false, false) => "host:port or [IPv6]:port",
        }
    }
}

/// `Ok` when `addr` has one of the forms `accepts` takes, otherwise
/// [`Error::InvalidAddress`] saying what is wrong.
pub(crate) fn check(addr: &str, accepts: Accepts) -> Result<()> {
    match problem(addr, accepts) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidAddress {
            addr: addr.to_owned(),
            reason,
            expected: accepts.expected(),
        }),
    }
}

/// What is wrong with `addr`, if anything.
fn problem(addr: &str, accepts: Accepts) -> Option<String> {
    if let Some(path) = addr.strip_prefix(UNIX_PREFIX) {
        return match (accepts.unix, path.is_empty()) {
            (false, _) => Some("this transport has no Unix sockets".to_owned()),
            (true, true) => Some("`unix:` needs the socket's path: unix:/run/app.sock".to_owned()),
            (true, false) => None,
        };
    }
    // `systemd:N` with a bad N is reported by the activation itself, which
    // knows how many sockets were handed in.
    if accepts.systemd && (addr == "systemd" || addr.starts_with("systemd:")) {
        return None;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Some(if addr.parse::<u16>().is_ok() {
            missing_host(addr, accepts)
        } else {
            format!("no port: write {addr}:PORT")
        });
    };
    if host.is_empty() {
        return Some(missing_host(port, accepts));
    }
    if let Some(bracketed) = host.strip_prefix('[') {
        let is_ipv6 = bracketed
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        if !is_ipv6 {
            return Some(format!("`{host}` is not an IPv6 address in brackets"));
        }
    } else if host.contains(':') {
        return Some("an IPv6 address goes in brackets: [::1]:PORT".to_owned());
    }
    match port.parse::<u16>() {
        Err(_) if port.is_empty() => Some("no port after the colon".to_owned()),
        Err(_) => Some(format!("the port `{port}` is not a number from 0 to 65535")),
        Ok(0) if !accepts.listens => {
            Some("port 0 cannot be connected to: name the server's port".to_owned())
        }
        Ok(_) => None,
    }
}

/// A port without a host: say which host the user most likely meant.
fn missing_host(port: &str, accepts: Accepts) -> String {
    if accepts.listens {
        format!(
            "no host: write 0.0.0.0:{port} to listen on every interface, or \
             127.0.0.1:{port} for this machine only"
        )
    } else {
        format!("no host: write HOST:{port}, e.g. 127.0.0.1:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(addr: &str, accepts: Accepts) -> String {
        match check(addr, accepts) {
            Err(Error::InvalidAddress { reason, .. }) => reason,
            other => panic!("`{addr}`: {other:?}"),
        }
    }

    #[test]
    fn well_formed_addresses_pass() {
        for addr in [
            "127.0.0.1:8081",
            "localhost:1",
            "[::1]:80",
            "example.com:65535",
        ] {
            check(addr, Accepts::TCP_CLIENT).unwrap();
            check(addr, Accepts::UDP_SERVER).unwrap();
        }
        check("0.0.0.0:0", Accepts::STREAM_SERVER).unwrap();
        check("systemd", Accepts::STREAM_SERVER).unwrap();
        check("systemd:2", Accepts::UDP_SERVER).unwrap();
        #[cfg(unix)]
        check("unix:/run/app.sock", Accepts::TCP_CLIENT).unwrap();
    }

    #[test]
    fn a_missing_port_or_host_is_named() {
        assert_eq!(
            reason("127.0.0.1", Accepts::TCP_CLIENT),
            "no port: write 127.0.0.1:PORT"
        );
        assert!(reason("8081", Accepts::STREAM_SERVER).contains("0.0.0.0:8081"));
        assert!(reason(":8081", Accepts::UDP_SERVER).contains("0.0.0.0:8081"));
        assert!(reason("8081", Accepts::TCP_CLIENT).contains("127.0.0.1:8081"));
        assert_eq!(
            reason("localhost:", Accepts::TCP_CLIENT),
            "no port after the colon"
        );
    }

    #[test]
    fn bad_ports_and_ipv6_without_brackets_are_named() {
        assert!(reason("localhost:http", Accepts::TCP_CLIENT).contains("`http` is not a number"));
        assert!(reason("localhost:70000", Accepts::UDP_CLIENT).contains("`70000`"));
        assert!(reason("127.0.0.1:0", Accepts::TCP_CLIENT).contains("port 0"));
        assert!(reason("::1:80", Accepts::STREAM_SERVER).contains("brackets"));
        assert!(reason("[::1:80", Accepts::STREAM_SERVER).contains("brackets"));
    }

    #[test]
    fn forms_the_transport_lacks_are_refused() {
        assert!(reason("unix:/run/app.sock", Accepts::UDP_CLIENT).contains("no Unix sockets"));
        assert!(reason("systemd", Accepts::TCP_CLIENT).contains("no port"));
        #[cfg(unix)]
        assert!(reason("unix:", Accepts::STREAM_SERVER).contains("path"));
        let text = check("127.0.0.1", Accepts::UDP_CLIENT)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("`127.0.0.1`") && text.contains("host:port"),
            "{text}"
        );
    }
}
