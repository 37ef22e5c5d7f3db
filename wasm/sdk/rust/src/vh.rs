//! The Veraltheim kernel ABI for Rust (`#![no_std]`, wasm32-unknown-unknown); the same contract
//! as the C SDK's vh.h. A kernel is
//!     #[no_mangle] pub extern "C" fn name(input: *const u8, in_len: u32, params: *const f64,
//!                                        n_params: i32, result: *mut VhResult) -> i32
//! which lowers to (i32, i32, i32, i32, i32) -> i32. It returns OK after `done(result, out)`,
//! or BAD_PARAMS / BAD_INPUT / NO_MEMORY after `fail(code, b"why\0")` (the host shows "why").
//! Params are f64 in the spec's order. Memory comes from a bump allocator reset before each
//! call (`alloc_slice`): everything a call allocates is freed by the next one.
//! The module exports memory, vh_alloc, vh_reset, vh_begin and vh_error (below), and imports
//! only env.vh_progress (needs the "progress" grant in the spec).

pub const OK: i32 = 0;
pub const BAD_PARAMS: i32 = -1;
pub const BAD_INPUT: i32 = -2;
pub const NO_MEMORY: i32 = -3;

/// Where the kernel's output is: {u32 ptr, u32 len}.
#[repr(C)]
pub struct VhResult {
    pub ptr: u32,
    pub len: u32,
}

extern "C" {
    static __heap_base: u8;
}

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "vh_progress"]
    fn vh_progress(done: i32, total: i32);
}

static mut HEAP_TOP: usize = 0;
static mut LAST_ERROR: *const u8 = core::ptr::null();

fn heap_start() -> usize {
    (unsafe { &__heap_base as *const u8 as usize } + 15) & !15
}

#[no_mangle]
pub extern "C" fn vh_reset() {
    unsafe {
        HEAP_TOP = heap_start();
        LAST_ERROR = core::ptr::null();
    }
}

#[no_mangle]
pub extern "C" fn vh_alloc(size: u32) -> *mut u8 {
    unsafe {
        if HEAP_TOP == 0 {
            HEAP_TOP = heap_start();
        }
        let start = HEAP_TOP as u64;
        let end = (start + size as u64 + 15) & !15;
        if end > u32::MAX as u64 {
            LAST_ERROR = b"out of memory: allocation exceeds 4 GiB\0".as_ptr();
            return core::ptr::null_mut();
        }
        let have = core::arch::wasm32::memory_size(0) as u64 * 65536;
        if end > have {
            let pages = ((end - have + 65535) / 65536) as usize;
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                LAST_ERROR = b"out of memory: the memory limit was reached\0".as_ptr();
                return core::ptr::null_mut();
            }
        }
        HEAP_TOP = end as usize;
        start as usize as *mut u8
    }
}

#[no_mangle]
pub extern "C" fn vh_begin(size: u32) -> *mut u8 {
    vh_reset();
    vh_alloc(size)
}

#[no_mangle]
pub extern "C" fn vh_error() -> *const u8 {
    unsafe { LAST_ERROR }
}

/// `len` bytes from the allocator, or None when the memory limit is reached.
pub fn alloc_slice(len: u32) -> Option<&'static mut [u8]> {
    let p = vh_alloc(len);
    if p.is_null() {
        None
    } else {
        Some(unsafe { core::slice::from_raw_parts_mut(p, len as usize) })
    }
}

/// The input block as a slice.
pub unsafe fn input(ptr: *const u8, len: u32) -> &'static [u8] {
    if len == 0 {
        &[]
    } else {
        core::slice::from_raw_parts(ptr, len as usize)
    }
}

/// The params block as a slice.
pub unsafe fn params(ptr: *const f64, n: i32) -> &'static [f64] {
    if n <= 0 {
        &[]
    } else {
        core::slice::from_raw_parts(ptr, n as usize)
    }
}

/// An integer param in lo..=hi (NaN, infinities and fractions are refused).
pub fn int_param(p: f64, lo: i32, hi: i32) -> Option<i32> {
    if p >= lo as f64 && p <= hi as f64 && p == (p as i32) as f64 {
        Some(p as i32)
    } else {
        None
    }
}

/// Sets the error message (NUL-terminated bytes) and returns `code`.
pub fn fail(code: i32, message: &'static [u8]) -> i32 {
    unsafe { LAST_ERROR = message.as_ptr() };
    code
}

/// Publishes `out` as the output and returns OK.
pub fn done(result: *mut VhResult, out: &[u8]) -> i32 {
    unsafe {
        (*result).ptr = out.as_ptr() as u32;
        (*result).len = out.len() as u32;
    }
    OK
}

/// Progress of a long kernel; the host may stop the job at this point.
pub fn progress(done: i32, total: i32) {
    unsafe { vh_progress(done, total) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
