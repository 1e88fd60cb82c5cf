//! A blocking FastCGI client (placeholder module, filled by the client work).
