-- Re-queues or purges dead letters, each only if it is still in the dead-letter list.
--
-- KEYS[1]  the dead-letter list
-- KEYS[2]  the entry list
-- ARGV[1]  'requeue' or 'purge'
-- then pairs: the stored dead letter, its payload (pushed onto the entry list on 'requeue')
--
-- Returns how many were found (and re-queued or purged).

local n = 0
for i = 2, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    n = n + 1
    if ARGV[1] == 'requeue' then redis.call('RPUSH', KEYS[2], ARGV[i + 1]) end
  end
end
return n
