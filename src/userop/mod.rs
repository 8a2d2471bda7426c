//! UserOperation wire and domain types.
