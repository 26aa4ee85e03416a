//! The sans-IO connection engine (placeholder until the engine lands).
