//! permessage-deflate negotiation (RFC 7692 section 5 and 7.1): read a client's offers from
//! `Sec-WebSocket-Extensions`, accept the first one our settings allow, and write the
//! answer; and a client's side of it. Pure functions: no socket, no compression state.

use super::DeflateConfig;

/// The parameters both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Agreed {
    /// The window the server compresses with.
    pub server_window_bits: u8,
    /// The window the client compresses with (what the server must inflate).
    pub client_window_bits: u8,
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value answering the accepted offer.
    ///
    /// ```
    /// use subscope_deflate::{DeflateConfig, negotiate};
    ///
    /// let offer = "permessage-deflate; client_max_window_bits";
    /// let agreed = negotiate([offer], &DeflateConfig::new()).unwrap();
    /// assert_eq!(
    ///     agreed.response(),
    ///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
    /// );
    /// ```
    pub fn response(&self) -> String {
        let mut out = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_window_bits < 15 {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        if self.client_window_bits < 15 {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_window_bits
            ));
        }
        out
    }

    /// The parameters a server's answer states, for a client that sent an offer; `None` when
    /// the answer is not a valid permessage-deflate response (RFC 7692 5: the client then
    /// fails the connection) or there is none.
    pub fn from_response(value: &str) -> Option<Self> {
        let offers = split_offers(value);
        let [offer] = offers.as_slice() else {
            return None;
        };
        if offer.name != "permessage-deflate" {
            return None;
        }
        let mut agreed = Self {
            server_window_bits: 15,
            client_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        };
        let mut seen = Vec::new();
        for (name, value) in &offer.params {
            if seen.contains(name) {
                return None;
            }
            seen.push(name.clone());
            match (name.as_str(), value.as_deref()) {
                ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => agreed.server_window_bits = window_bits(v)?,
                ("client_max_window_bits", Some(v)) => agreed.client_window_bits = window_bits(v)?,
                _ => return None,
            }
        }
        Some(agreed)
    }
}

/// The `Sec-WebSocket-Extensions` offer a client sends: `permessage-deflate` and
/// `client_max_window_bits` (so a server may ask for a smaller window).
pub fn client_offer() -> &'static str {
    "permessage-deflate; client_max_window_bits"
}

/// The first acceptable permessage-deflate offer among the header values, in the client's
/// order; `None` when there is none (the connection then runs uncompressed).
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    settings: &DeflateConfig,
) -> Option<Agreed> {
    header_values
        .into_iter()
        .flat_map(split_offers)
        .find_map(|offer| accept(&offer, settings))
}

/// One extension offer: its name and `(param, value)` pairs.
#[derive(Debug, PartialEq)]
struct Offer {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// Splits a header value into offers (`,` between offers, `;` between parameters; a
/// value may be a quoted string).
fn split_offers(value: &str) -> Vec<Offer> {
    value
        .split(',')
        .filter_map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?.to_ascii_lowercase();
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (
                        k.trim().to_ascii_lowercase(),
                        Some(v.trim().trim_matches('"').to_owned()),
                    ),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            Some(Offer { name, params })
        })
        .collect()
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692: 1*DIGIT without leading zeros, 8..=15.
    if value.starts_with('0') {
        return None;
    }
    value.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Accepts one offer under `settings`, or declines it (RFC 7692 7.1: an unknown or
/// repeated parameter, or an invalid value, declines the offer, not the connection).
fn accept(offer: &Offer, settings: &DeflateConfig) -> Option<Agreed> {
    if offer.name != "permessage-deflate" {
        return None;
    }
    let mut seen = Vec::new();
    let mut server_bits = settings.server_max_window_bits;
    let mut client_bits = 15;
    let mut server_nct = settings.server_no_context_takeover;
    let mut client_nct = settings.client_no_context_takeover;
    for (name, value) in &offer.params {
        if seen.contains(name) {
            return None;
        }
        seen.push(name.clone());
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => server_nct = true,
            ("client_no_context_takeover", None) => client_nct = true,
            ("server_max_window_bits", Some(v)) => {
                // The client limits our window: never above what it allows.
                server_bits = server_bits.min(window_bits(v)?);
            }
            ("client_max_window_bits", None) => {
                // The client may use a smaller window if we ask for one.
                client_bits = settings.client_max_window_bits;
            }
            ("client_max_window_bits", Some(v)) => {
                client_bits = window_bits(v)?.min(settings.client_max_window_bits);
            }
            _ => return None,
        }
    }
    // zlib cannot compress with an 8-bit raw window (it uses 9), and answering more than
    // the client allows would break it: decline such an offer. A client that did not offer
    // `client_max_window_bits` compresses with 15 bits; we inflate any window.
    if server_bits < 9 {
        return None;
    }
    Some(Agreed {
        server_window_bits: server_bits,
        client_window_bits: client_bits,
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Option<Agreed> {
        negotiate([v], &DeflateConfig::new())
    }

    #[test]
    fn browsers_offer() {
        // Chromium and Firefox.
        let a = one("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            a.response(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"
        );
        assert_eq!((a.server_window_bits, a.client_window_bits), (12, 15));
    }

    #[test]
    fn limits_from_both_sides() {
        let s = DeflateConfig::new()
            .server_max_window_bits(10)
            .client_max_window_bits(12)
            .client_no_context_takeover(false);
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &s).unwrap();
        assert_eq!(
            a.response(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"
        );
        let a = negotiate(["permessage-deflate; server_max_window_bits=9"], &s).unwrap();
        assert_eq!(a.server_window_bits, 9);
        let a = one("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            .unwrap();
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        assert_eq!(one("permessage-deflate; server_max_window_bits=16"), None);
        assert_eq!(one("permessage-deflate; server_max_window_bits=08"), None);
        assert_eq!(one("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(one("permessage-deflate; foo"), None);
        assert_eq!(
            one("permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
            None
        );
        assert_eq!(one("x-webkit-deflate-frame"), None);
        assert_eq!(one("permessage-deflate; server_max_window_bits=8"), None);
        let a = one("permessage-deflate; foo, permessage-deflate; server_max_window_bits=\"12\"")
            .unwrap();
        assert_eq!(a.server_window_bits, 12);
        let a = negotiate(["foo", "permessage-deflate"], &DeflateConfig::new());
        assert!(a.is_some(), "across header lines");
    }

    #[test]
    fn a_client_reads_the_answer_it_was_given() {
        for config in [
            DeflateConfig::new(),
            DeflateConfig::new()
                .server_no_context_takeover(true)
                .server_max_window_bits(11)
                .client_max_window_bits(10),
        ] {
            let agreed = negotiate([client_offer()], &config).unwrap();
            assert_eq!(Agreed::from_response(&agreed.response()), Some(agreed));
        }
        assert_eq!(Agreed::from_response("permessage-deflate; bogus"), None);
        assert_eq!(
            Agreed::from_response("permessage-deflate, permessage-deflate"),
            None
        );
    }
}
