-- One flush into one shard of a Redis Cluster (apply_flush comes from flush_body.lua,
-- prepended). Every key carries the shard's hash tag: one slot.
--
-- KEYS[1]      the shard's flush ids: a sorted set, member the id, score when it is forgotten
--              (ms, server time); ids past it are trimmed at each flush
-- KEYS[2]      the shard's own hash (`retries_seen`: flushes found applied before)
-- KEYS[3 ..]   as apply_flush(3, 3, ..): the entry list, the function set, the change log, the
--              version counter, the aggregate hashes
-- ARGV[1]      how long an id is remembered, seconds
-- ARGV[2]      the flush id
-- ARGV[3 ..]   as apply_flush(3, 3, ..)
--
-- A flush found applied before still writes (retries_seen), so that a WAIT after it covers the
-- flush it found: Redis counts for WAIT only what a client's commands replicated.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

return apply_flush(3, 3,
  function()
    if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
      redis.call('HINCRBY', KEYS[2], 'retries_seen', 1)
      return true
    end
    return false
  end,
  function()
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]) * 1000, ARGV[2])
  end)
