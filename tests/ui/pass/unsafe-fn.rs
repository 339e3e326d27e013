//! `unsafe fn`, `async unsafe fn`, `extern "C" fn` and `unsafe extern "C" fn`: the body keeps its
//! unsafe context.
#![deny(warnings)]
#![deny(unsafe_op_in_unsafe_fn)]

use fnmetrics::measured;

/// # Safety
/// `p` must be valid for reads.
#[measured]
unsafe fn read(p: *const u32) -> u32 {
    // SAFETY: the caller promises `p` is valid.
    unsafe { *p }
}

/// # Safety
/// `p` must be valid for reads.
#[allow(unsafe_op_in_unsafe_fn)]
#[measured]
unsafe fn read_without_block(p: *const u32) -> u32 {
    *p
}

#[measured]
extern "C" fn add(a: u32, b: u32) -> u32 {
    a + b
}

/// # Safety
/// `p` must be valid for writes.
#[measured]
unsafe extern "C" fn write(p: *mut u32, v: u32) {
    // SAFETY: the caller promises `p` is valid.
    unsafe { *p = v }
}

/// # Safety
/// `p` must be valid for reads.
#[measured]
async unsafe fn read_async(p: *const u32) -> u32 {
    // SAFETY: the caller promises `p` is valid.
    unsafe { *p }
}

/// # Safety
/// `p` must be valid for reads.
#[allow(unsafe_op_in_unsafe_fn)]
#[measured]
async unsafe fn read_async_without_block(p: *const u32) -> u32 {
    *p
}

struct Raw(*const u32);

impl Raw {
    /// # Safety
    /// The pointer must be valid.
    #[measured]
    unsafe fn get(&self) -> u32 {
        // SAFETY: the caller promises the pointer is valid.
        unsafe { *self.0 }
    }
}

fn main() {
    let mut x = 1;
    // SAFETY: `x` is a valid u32.
    unsafe {
        assert_eq!(read(&x), 1);
        assert_eq!(read_without_block(&x), 1);
        write(&mut x, 5);
        assert_eq!(Raw(&x).get(), 5);
        assert_eq!(pollster::block_on(read_async(&x)), 5);
        assert_eq!(pollster::block_on(read_async_without_block(&x)), 5);
    }
    let f: extern "C" fn(u32, u32) -> u32 = add;
    assert_eq!(f(2, 3), 5);
    for name in [
        "read",
        "read_without_block",
        "add",
        "write",
        "Raw::get",
        "read_async",
        "read_async_without_block",
    ] {
        let name = format!("{}::{name}", module_path!());
        assert_eq!(fnmetrics::get(&name).map(|m| m.calls), Some(1), "{name}");
    }
}
