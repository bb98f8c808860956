#pragma once
// Applies schema/NNN_name.sql files in order, each in its own transaction,
// recorded in schema_migrations; safe to run twice and from two processes at
// once (an advisory lock serialises them).

#include <filesystem>

#include "store/database.hpp"

namespace ctquota::store {

// Returns how many migrations were applied now (0 when up to date).
int apply_migrations(Database& db, const std::filesystem::path& schema_dir);

}  // namespace ctquota::store
