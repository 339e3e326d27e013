-- One flush into a single Redis (apply_flush comes from flush_body.lua, prepended).
--
-- KEYS[1]      the flush-id key (a string with a TTL: present while the id is remembered)
-- KEYS[2 ..]   as apply_flush(2, 2, ..): the entry list, the function set, the change log, the
--              version counter, the aggregate hashes
-- ARGV[1]      the flush-id key's TTL, seconds
-- ARGV[2 ..]   as apply_flush(2, 2, ..)

return apply_flush(2, 2,
  function() return redis.call('EXISTS', KEYS[1]) == 1 end,
  function() redis.call('SET', KEYS[1], '1', 'EX', ARGV[1]) end)
