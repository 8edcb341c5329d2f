//! The server's cache of parsed GraphQL documents, keyed by query text, shared by every
//! transport: a client that repeats the same document (a `publish` mutation per event, a
//! page that subscribes the same way on every load) pays async-graphql's parser once.
//!
//! Bounded twice: at most `capacity` documents (the oldest inserted is evicted first), and
//! only documents whose text is at most [`MAX_CACHED_QUERY`] bytes, so a client sending
//! large distinct documents cannot grow it past `capacity × MAX_CACHED_QUERY` of text (and
//! its parse). A document that does not parse is not cached: async-graphql reports it.
//! Hits and misses are gauges (`document_cache_hits`, `document_cache_misses`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::parse_query;
use async_graphql::parser::types::ExecutableDocument;

use crate::Gauges;

/// The longest query text the cache keeps.
pub(crate) const MAX_CACHED_QUERY: usize = 4 * 1024;

/// See the module docs.
pub(crate) struct Documents {
    capacity: usize,
    cached: Mutex<Cached>,
    gauges: Arc<Gauges>,
}

#[derive(Default)]
struct Cached {
    by_text: HashMap<Arc<str>, Arc<ExecutableDocument>>,
    /// Insertion order, for eviction.
    order: VecDeque<Arc<str>>,
}

impl Documents {
    /// A cache of at most `capacity` documents (0: parse every time).
    pub(crate) fn new(capacity: usize, gauges: Arc<Gauges>) -> Self {
        Self {
            capacity,
            cached: Mutex::default(),
            gauges,
        }
    }

    /// `query` parsed: from the cache, or parsed now (and kept when it may be). `None`
    /// when it does not parse.
    pub(crate) fn parse(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        let cacheable = self.capacity > 0 && query.len() <= MAX_CACHED_QUERY;
        if cacheable {
            let hit = self.lock().by_text.get(query).cloned();
            if let Some(document) = hit {
                self.gauges.count_document(true);
                return Some(document);
            }
        }
        // Parsed outside the lock: a large document does not hold up the others.
        let document = Arc::new(parse_query(query).ok()?);
        self.gauges.count_document(false);
        if cacheable {
            let mut cached = self.lock();
            let text: Arc<str> = Arc::from(query);
            if !cached.by_text.contains_key(query) {
                while cached.order.len() >= self.capacity {
                    let Some(oldest) = cached.order.pop_front() else {
                        break;
                    };
                    cached.by_text.remove(&oldest);
                }
                cached.order.push_back(Arc::clone(&text));
                cached.by_text.insert(text, Arc::clone(&document));
            }
        }
        Some(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_after_the_first_parse_and_evicts_the_oldest() {
        let gauges = Arc::new(Gauges::new());
        let docs = Documents::new(2, Arc::clone(&gauges));
        let a = docs.parse("{ a }").expect("parses");
        let again = docs.parse("{ a }").expect("parses");
        assert!(Arc::ptr_eq(&a, &again), "the second is the cached one");
        docs.parse("{ b }");
        docs.parse("{ c }"); // evicts `{ a }`
        let third = docs.parse("{ a }").expect("parses");
        assert!(!Arc::ptr_eq(&a, &third), "evicted, parsed again");
        let g = gauges.snapshot();
        assert_eq!((g.document_cache_hits, g.document_cache_misses), (1, 4));
        assert!(docs.parse("{ broken").is_none());
        assert_eq!(docs.lock().by_text.len(), 2);
    }

    #[test]
    fn long_documents_and_a_zero_capacity_are_not_kept() {
        let gauges = Arc::new(Gauges::new());
        let long = format!("{{ a {} }}", " ".repeat(MAX_CACHED_QUERY));
        let docs = Documents::new(8, Arc::clone(&gauges));
        docs.parse(&long);
        docs.parse(&long);
        assert_eq!(gauges.snapshot().document_cache_hits, 0);
        let off = Documents::new(0, Arc::clone(&gauges));
        off.parse("{ a }");
        off.parse("{ a }");
        assert_eq!(gauges.snapshot().document_cache_hits, 0);
        assert!(off.lock().by_text.is_empty());
    }
}
