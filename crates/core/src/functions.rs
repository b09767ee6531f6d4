//! The interned function table: names are resolved here, off the hot path.
//!
//! The hook interns a function's identity once per code object; records carry only the
//! small integer id. Identical identities (the same code re-created by `exec` in a loop)
//! share one id, so the table is bounded by the number of distinct functions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Where a Python function lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct FunctionInfo {
    pub module: String,
    pub qualname: String,
    pub file: String,
    pub line: u32,
}

#[derive(Default)]
struct Inner {
    by_id: Vec<Arc<FunctionInfo>>,
    ids: HashMap<Arc<FunctionInfo>, u32>,
}

/// Thread-safe, append-only table of function identities. Id 0 is never handed out.
#[derive(Default)]
pub struct FunctionTable {
    inner: RwLock<Inner>,
}

impl FunctionTable {
    /// Returns the id for `info`, adding it if it is new.
    pub fn intern(&self, info: FunctionInfo) -> u32 {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = inner.ids.get(&info) {
            return id;
        }
        let info = Arc::new(info);
        inner.by_id.push(Arc::clone(&info));
        let id = inner.by_id.len() as u32;
        inner.ids.insert(info, id);
        id
    }

    /// The identity behind `id`.
    pub fn get(&self, id: u32) -> Option<Arc<FunctionInfo>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        id.checked_sub(1)
            .and_then(|i| inner.by_id.get(i as usize).cloned())
    }

    /// An independent copy with the same ids (a forked child must not share the parent's
    /// lock, which another thread may have held at fork time). When that thread was writing
    /// (or waiting to) at the fork, the lock never frees in the child: the copy starts empty
    /// rather than wait forever, and spans of functions seen before the fork lose their names.
    pub fn copy(&self) -> FunctionTable {
        let inner = match self.inner.try_read() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return FunctionTable::default(),
        };
        let by_id: Vec<Arc<FunctionInfo>> = inner
            .by_id
            .iter()
            .map(|f| Arc::new((**f).clone()))
            .collect();
        let ids = by_id
            .iter()
            .enumerate()
            .map(|(i, f)| (Arc::clone(f), i as u32 + 1))
            .collect();
        FunctionTable {
            inner: RwLock::new(Inner { by_id, ids }),
        }
    }

    /// Number of distinct functions interned so far.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }

    /// True when nothing has been interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once() {
        let t = FunctionTable::default();
        let f = FunctionInfo {
            module: "m".into(),
            qualname: "f".into(),
            file: "m.py".into(),
            line: 3,
        };
        let a = t.intern(f.clone());
        let b = t.intern(f.clone());
        assert_eq!(a, b);
        assert_eq!(a, 1);
        assert_eq!(*t.get(a).unwrap(), f);
        assert!(t.get(0).is_none());
        assert!(t.get(2).is_none());
    }
}
