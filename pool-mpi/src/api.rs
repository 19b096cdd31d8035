//! The pool's calls as traits, so that one program runs on a local
//! [`Pool`] or over MPI ranks by changing the line that makes the pool.

use std::time::Duration;

use multiproc_pool::{AsyncResult, Error, Pool, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A pending result (Python's `AsyncResult`): the local pool's
/// [`AsyncResult`], or a result of a pool over ranks.
pub trait Pending<T> {
    /// Waits for the result and takes it.
    ///
    /// # Errors
    /// The task's failure.
    fn get(self) -> Result<T>;
    /// [`get`](Pending::get), waiting at most `timeout` ([`Error::Timeout`]).
    ///
    /// # Errors
    /// As for [`get`](Pending::get), and [`Error::Timeout`].
    fn get_timeout(&mut self, timeout: Duration) -> Result<T>;
    /// Waits until the result is there.
    fn wait(&self);
    /// [`wait`](Pending::wait), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    fn wait_timeout(&self, timeout: Duration) -> Result<()>;
    /// Whether the result is there.
    fn ready(&self) -> bool;
    /// Whether the task succeeded; `None` while it runs.
    fn successful(&self) -> Option<bool>;
}

impl<T: Send + 'static> Pending<T> for AsyncResult<T> {
    fn get(self) -> Result<T> {
        AsyncResult::get(self)
    }
    fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        AsyncResult::get_timeout(self, timeout)
    }
    fn wait(&self) {
        AsyncResult::wait(self);
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        AsyncResult::wait_timeout(self, timeout)
    }
    fn ready(&self) -> bool {
        AsyncResult::ready(self)
    }
    fn successful(&self) -> Option<bool> {
        AsyncResult::successful(self)
    }
}

/// The calls of Python's `Pool`, as [`Pool`] and [`MpiPool`](crate::MpiPool)
/// both answer them. Write a function against `impl Tasks` and hand it either.
///
/// # Examples
/// ```
/// use multiproc_pool_mpi::Tasks;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn sum_of_squares(pool: &impl Tasks, n: u64) -> multiproc_pool::Result<u64> {
///     Ok(pool.map(square, 0..n)?.into_iter().sum())
/// }
///
/// let pool = multiproc_pool::Pool::new(2)?;
/// assert_eq!(sum_of_squares(&pool, 4)?, 14);
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub trait Tasks {
    /// What [`apply_async`](Tasks::apply_async) and
    /// [`map_async`](Tasks::map_async) answer.
    type Pending<T: Send + 'static>: Pending<T>;

    /// Worker processes behind the pool (on every rank, for a pool over ranks).
    fn processes(&self) -> usize;

    /// `f(args)` in a worker, waiting for it (Python's `apply`).
    ///
    /// # Errors
    /// The task's failure, or [`Error::Closed`].
    fn apply<A, R>(&self, f: impl Fn(A) -> R + Copy + 'static, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// `f(args)` in a worker, without waiting (Python's `apply_async`).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::EncodeArgs`].
    fn apply_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
    ) -> Result<Self::Pending<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// [`apply_async`](Tasks::apply_async) with Python's `callback` and
    /// `error_callback`, run in this process.
    ///
    /// # Errors
    /// As for [`apply_async`](Tasks::apply_async).
    fn apply_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<Self::Pending<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// `f` over `items`, in order (Python's `map`).
    ///
    /// # Errors
    /// [`Error::Item`] with the lowest failing index; [`Error::Closed`].
    fn map<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// [`map`](Tasks::map) without waiting (Python's `map_async`).
    ///
    /// # Errors
    /// [`Error::Closed`].
    fn map_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Self::Pending<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// `f(a, b)` over pairs, in order (Python's `starmap`).
    ///
    /// # Errors
    /// As for [`map`](Tasks::map).
    fn starmap<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// [`starmap`](Tasks::starmap) without waiting (Python's `starmap_async`).
    ///
    /// # Errors
    /// As for [`map_async`](Tasks::map_async).
    fn starmap_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Self::Pending<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// `f` over `items`, lazily and in order (Python's `imap`); a failed
    /// item does not end the iteration.
    fn imap<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = Result<R>> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// [`imap`](Tasks::imap) in the order results come, each with its
    /// item's index (Python's `imap_unordered`).
    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = (usize, Result<R>)> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static;

    /// Takes no new tasks; those sent still run (Python's `close`).
    fn close(&self);

    /// Waits for every task after [`close`](Tasks::close) (Python's `join`).
    ///
    /// # Errors
    /// [`Error::NotClosed`].
    fn join(&self) -> Result<()>;

    /// [`join`](Tasks::join), waiting at most `timeout` for the tasks.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`join`](Tasks::join).
    fn join_timeout(&self, timeout: Duration) -> Result<()>;

    /// Stops at once: pending tasks fail with [`Error::Terminated`]
    /// (Python's `terminate`).
    fn terminate(&self);
}

impl Tasks for Pool {
    type Pending<T: Send + 'static> = AsyncResult<T>;

    fn processes(&self) -> usize {
        Pool::processes(self)
    }

    fn apply<A, R>(&self, f: impl Fn(A) -> R + Copy + 'static, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::apply(self, f, args)
    }

    fn apply_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::apply_async(self, f, args)
    }

    fn apply_async_with<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        args: A,
        callback: impl FnOnce(&R) + Send + 'static,
        error_callback: impl FnOnce(&Error) + Send + 'static,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::apply_async_with(self, f, args, callback, error_callback)
    }

    fn map<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::map(self, f, items)
    }

    fn map_async<A, R>(
        &self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::map_async(self, f, items)
    }

    fn starmap<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::starmap(self, f, items)
    }

    fn starmap_async<A, B, R>(
        &self,
        f: impl Fn(A, B) -> R + Copy + 'static,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::starmap_async(self, f, items)
    }

    fn imap<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = Result<R>> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::imap(self, f, items)
    }

    fn imap_unordered<'a, A, R, I>(
        &'a self,
        f: impl Fn(A) -> R + Copy + 'static,
        items: I,
    ) -> impl Iterator<Item = (usize, Result<R>)> + 'a
    where
        I: IntoIterator<Item = A>,
        I::IntoIter: 'a,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Pool::imap_unordered(self, f, items)
    }

    fn close(&self) {
        Pool::close(self);
    }

    fn join(&self) -> Result<()> {
        Pool::join(self)
    }

    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        Pool::join_timeout(self, timeout)
    }

    fn terminate(&self) {
        Pool::terminate(self);
    }
}
