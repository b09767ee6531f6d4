//! Capture: reading Python values without running user code. Previews of arguments and
//! return values under `FERROTRACE_PREVIEW` (`preview`, with the type facts, instance
//! attributes, dict-key cache, type names and address map it reads through), a call's
//! argument values in its frame (`frame_args`) and the exception leaving a frame
//! (`exception`), all bounded and redacted.
//!
//! Knows nothing of calls, recorders or sessions: calls only `process` (and the core's
//! preview writer and redactor); called by the recorder and the backends.

pub mod address_map;
pub mod exception;
pub mod frame_args;
pub mod instance_attrs;
pub mod key_cache;
pub mod preview;
pub mod type_info;
pub mod type_name;
