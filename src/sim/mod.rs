//! MiniMax simulator (being written)
