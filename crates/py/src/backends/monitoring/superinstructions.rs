//! CPython 3.12 only: gives code back the superinstructions `sys.monitoring` took from it.
//!
//! When 3.12 creates a code object it fuses five common pairs of instructions (`LOAD_FAST
//! LOAD_FAST`, `LOAD_FAST LOAD_CONST`, `STORE_FAST LOAD_FAST`, `STORE_FAST STORE_FAST`,
//! `LOAD_CONST LOAD_FAST`) into superinstructions that do both in one dispatch. The first
//! time any tool instruments the code object, CPython rewrites every one of them to the
//! plain pair and never fuses them again: not after `DISABLE`, not after events are off.
//! Every later call of that code then dispatches more instructions: 6 to 18 interpreter
//! instructions per call on the benchmark workloads, even for code ferrotrace filtered out.
//!
//! When ferrotrace first decides on a code object (its first `PY_START`, after CPython's
//! instrumentation pass), [`restore`] fuses again each pair whose two instructions are both
//! plain, exactly as `_PyCode_Quicken` does at creation. Neither instruction of a pair is
//! ever the site of a `PY_*` event, and an instrumented one (`INSTRUMENTED_LINE`,
//! `INSTRUMENTED_INSTRUCTION`) is not plain, so it is never fused. Any later instrumentation
//! pass (another tool switching on `LINE` events, say) strips the fused pairs again exactly
//! as it strips the ones made at creation, so no tool misses an event.
//!
//! The opcode numbers and inline-cache sizes come from the interpreter's own `opcode` and
//! `dis` modules, and the bytecode is written only after a check at install that a freshly
//! compiled function reads back, at the offset below, with its pairs fused as expected.
//! 3.13 and later compile superinstructions into the bytecode and instrumentation keeps
//! them, so there is nothing to restore there.

use crate::process::gil_cell::GilCell;
use pyo3::prelude::*;
use pyo3::{ffi, Python};

/// Byte offset of `co_code_adaptive` (the executed bytecode) in 3.12's `PyCodeObject`
/// (64-bit builds): right after `co_extra`, from `cpython/code.h`.
const ADAPTIVE_OFFSET: usize = 192;

/// What fusing needs to know about the running interpreter's opcodes.
struct Fusion {
    /// `(first, second, fused)` opcodes of each pair `_PyCode_Quicken` fuses.
    pairs: Vec<(u8, u8, u8)>,
    /// Inline cache entries that follow each (base) opcode.
    caches: [u8; 256],
}

impl Fusion {
    /// The fused opcode for the plain pair `(first, second)`, if they fuse.
    fn fused(&self, first: u8, second: u8) -> Option<u8> {
        self.pairs
            .iter()
            .find(|(a, b, _)| *a == first && *b == second)
            .map(|(_, _, f)| *f)
    }
}

/// Set by [`install`] once the layout check passed; until then [`restore`] does nothing.
static FUSION: GilCell<Option<Fusion>> = GilCell::new(None);

/// A function whose body never runs: its code is quickened at creation and never
/// instrumented, so it shows the layout and the fused pairs as 3.12 makes them.
const PROBE: &std::ffi::CStr = c"def probe(a, b):\n    x = a\n    y = x\n    return a, b, 1, y\n";

/// Reads the opcode tables from `opcode` and `dis` and checks the bytecode layout against a
/// probe function; leaves restoring off when anything does not match.
pub fn install(py: Python<'_>) {
    let Ok(fusion) = load_tables(py) else {
        return;
    };
    if probe_matches(py, &fusion).unwrap_or(false) {
        // SAFETY: the GIL is held (`py`).
        unsafe { *FUSION.get() = Some(fusion) };
    }
}

/// The fused pairs and inline-cache sizes of the running interpreter.
fn load_tables(py: Python<'_>) -> PyResult<Fusion> {
    let opcode = py.import("opcode")?;
    let all_opmap = py.import("dis")?.getattr("_all_opmap")?;
    let opmap = opcode.getattr("opmap")?;
    let number =
        |map: &Bound<'_, PyAny>, name: &str| -> PyResult<u8> { map.get_item(name)?.extract() };
    let mut pairs = Vec::new();
    for (first, second) in [
        ("LOAD_FAST", "LOAD_FAST"),
        ("LOAD_FAST", "LOAD_CONST"),
        ("STORE_FAST", "LOAD_FAST"),
        ("STORE_FAST", "STORE_FAST"),
        ("LOAD_CONST", "LOAD_FAST"),
    ] {
        pairs.push((
            number(&opmap, first)?,
            number(&opmap, second)?,
            number(&all_opmap, &format!("{first}__{second}"))?,
        ));
    }
    let entries: Vec<u8> = opcode.getattr("_inline_cache_entries")?.extract()?;
    let mut caches = [0u8; 256];
    if entries.len() != caches.len() {
        return Err(pyo3::exceptions::PyValueError::new_err("cache table size"));
    }
    caches.copy_from_slice(&entries);
    Ok(Fusion { pairs, caches })
}

/// True when the probe's executed bytecode, read at [`ADAPTIVE_OFFSET`], is its `co_code`
/// with exactly the expected pairs fused.
fn probe_matches(py: Python<'_>, fusion: &Fusion) -> PyResult<bool> {
    let globals = pyo3::types::PyDict::new(py);
    py.run(PROBE, Some(&globals), None)?;
    let code = globals
        .get_item("probe")?
        .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err("probe"))?
        .getattr("__code__")?;
    let base: Vec<u8> = code.getattr("co_code")?.extract()?;
    // SAFETY: `code` is a live code object (the GIL is held) and its size agrees with
    // `co_code` (checked by `executed`), so the reads stay inside the object.
    let Some(executed) = (unsafe { executed(code.as_ptr(), &base) }) else {
        return Ok(false);
    };
    let mut expected = base.clone();
    fuse_pairs(&base, &mut expected, fusion);
    Ok(expected != base && *executed == expected[..])
}

/// `code`'s executed bytecode, when its length agrees with `base` (its `co_code`).
///
/// # Safety
/// The GIL is held and `code` is a live code object.
unsafe fn executed<'a>(code: *mut ffi::PyObject, base: &[u8]) -> Option<&'a mut [u8]> {
    let units = (*(code as *mut ffi::PyVarObject)).ob_size;
    if units < 0 || units as usize * 2 != base.len() {
        return None;
    }
    Some(std::slice::from_raw_parts_mut(
        (code as *mut u8).add(ADAPTIVE_OFFSET),
        base.len(),
    ))
}

/// Fuses, in `target`, each pair `_PyCode_Quicken` would fuse in `base` (the plain bytecode
/// `target` was made from) whose two instructions are still plain in `target`. A fused
/// instruction is written over the first of its pair only, so the second is still read as
/// it was when the next pair is checked.
fn fuse_pairs(base: &[u8], target: &mut [u8], fusion: &Fusion) {
    let mut previous: Option<(usize, u8)> = None;
    let mut at = 0;
    while at + 1 < base.len() {
        let op = base[at];
        if let Some((prev_at, prev_op)) = previous {
            if let Some(fused) = fusion.fused(prev_op, op) {
                if target[prev_at] == prev_op && target[at] == op {
                    target[prev_at] = fused;
                }
            }
        }
        let caches = usize::from(fusion.caches[usize::from(op)]);
        previous = (caches == 0).then_some((at, op));
        at += 2 * (1 + caches);
    }
}

/// Fuses again, in `code`'s executed bytecode, every pair of plain instructions that
/// creation fused. Does nothing until [`install`] checked the layout.
///
/// # Safety
/// The GIL is held and `code` is a live code object.
pub unsafe fn restore(code: *mut ffi::PyObject) {
    let Some(fusion) = FUSION.get().as_ref() else {
        return;
    };
    let bytes = ffi::PyObject_GetAttrString(code, c"co_code".as_ptr());
    if bytes.is_null() {
        ffi::PyErr_Clear();
        return;
    }
    if ffi::PyBytes_Check(bytes) != 0 {
        let base = std::slice::from_raw_parts(
            ffi::PyBytes_AsString(bytes) as *const u8,
            ffi::PyBytes_Size(bytes) as usize,
        );
        // SAFETY: the GIL is held, so no other thread runs or rewrites this bytecode while
        // the slice lives; a frame of this code that is mid-way through a pair only ever sees
        // the first instruction rewritten, and the fused form does what the pair does.
        if let Some(executed) = executed(code, base) {
            fuse_pairs(base, executed, fusion);
        }
    }
    ffi::Py_DECREF(bytes);
}
