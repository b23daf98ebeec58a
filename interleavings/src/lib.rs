//! Tests that force interleavings of humpyard's threads at its pause points
//! (`humpyard::pause`, feature `pause-points`): races that loom cannot reach because they
//! involve real threads, real time or PostgreSQL. The tests are in `tests/`; this library is
//! empty.
