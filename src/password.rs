//! Argon2id password hashing: the hash the crate's own users table stores,
//! and the default of [`UserDirectory`](crate::store::UserDirectory) for an
//! app that has none of its own.
//!
//! [`hash_password`] makes a PHC string at OWASP's parameters (19 MiB, two
//! passes, one lane) with a fresh salt; [`verify_password`] checks a
//! password against any Argon2 PHC string. Both run on the crate's Argon2
//! threads, one per core, so a sign-in storm queues instead of allocating
//! 19 MiB per waiting request.

use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// OWASP's Argon2id parameters: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with Argon2id (OWASP parameters) and a fresh salt, as a
/// PHC string. Slow by design (tens of milliseconds): call it from a
/// blocking thread.
pub fn hash_password(password: &str) -> String {
    let password = password.to_owned();
    crate::threads::on_argon2_thread(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let params = argon2().params().clone();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        with_memory(params.block_count(), |memory| {
            argon2().hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
        })
        .expect("Argon2 with valid parameters, salt and output length does not fail");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).expect("valid parameters encode"),
            salt: Some(Salt::new(&salt).expect("a 16-byte salt is valid")),
            hash: Some(Output::new(&out).expect("a 32-byte output is valid")),
        }
        .to_string()
    })
}

/// The memory blocks of the Argon2 thread it runs on. Argon2 needs
/// `m_cost` KiB of memory per call; allocated afresh each time, the freed
/// blocks stay in the allocator's arenas (glibc raises its mmap threshold
/// after the first one), and a sign-in storm left hundreds of MiB resident.
/// Kept per thread, the memory is `threads × m_cost` for the life of the
/// process, whatever the load. (Every block is written before it is read,
/// so reuse needs no zeroing; a hash with a larger `m_cost` than any before
/// grows the buffer, up to [`MAX_REUSED_BLOCKS`], beyond which it gets a
/// buffer of its own.)
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    if blocks > MAX_REUSED_BLOCKS {
        return f(&mut vec![Block::new(); blocks]);
    }
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        f(&mut memory[..blocks])
    })
}

/// Largest Argon2 memory (in 1 KiB blocks) kept per thread between calls.
const MAX_REUSED_BLOCKS: usize = 64 * 1024;

/// Whether `password` matches the PHC string `stored` (Argon2 of any variant
/// and parameters the string names), computed in the thread's reused memory
/// and compared in constant time. Runs on an Argon2 thread.
pub(crate) fn verify_phc(password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let computed = with_memory(params.block_count(), |memory| {
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(password, salt, out, memory)
    });
    use subtle::ConstantTimeEq as _;
    computed.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Whether `password` matches the Argon2 PHC string `hash` (any variant and
/// parameters the string names; compared in constant time). A string that
/// is not a valid Argon2 PHC string matches nothing. Runs on the crate's
/// Argon2 threads; blocking, so call it from a blocking thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let (hash, password) = (hash.to_owned(), password.to_owned());
    crate::threads::on_argon2_thread(move || verify_phc(password.as_bytes(), &hash))
}

/// An Argon2id hash (at [`hash_password`]'s parameters) of a password no
/// user has: checked against when a name is unknown, so that an unknown
/// name costs the same work as a wrong password. Computed once.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        use base64::Engine as _;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        hash_password(&base64::engine::general_purpose::STANDARD.encode(secret))
    })
}

#[cfg(test)]
mod tests;
