//! flusher placeholder
