-- zrepl-reconcile channel program v1
-- Run by `zfs program -j POOL - ARGS...` (this text on stdin). ARGS is a flat list of
-- operations, each an operation word followed by its names (data, never Lua source):
--   bookmark SNAPSHOT BOOKMARK   zfs.sync.bookmark(SNAPSHOT, BOOKMARK)
--   destroy SNAPSHOT             zfs.sync.destroy(SNAPSHOT)
-- Returns one error number per operation, in order: 0 done, else an errno (destroy:
-- EBUSY 16 held, EEXIST 17 a clone's origin; bookmark: EEXIST 17 it exists, ENOENT 2 no
-- snapshot).
-- Every argument is checked before the first change: a bad list changes nothing. The
-- whole program runs in one transaction group.
local argv = (...)["argv"]
local ops = {}
local i = 1
while i <= #argv do
  local op = argv[i]
  if op == "bookmark" and i + 2 <= #argv then
    ops[#ops + 1] = {op, argv[i + 1], argv[i + 2]}
    i = i + 3
  elseif op == "destroy" and i + 1 <= #argv then
    ops[#ops + 1] = {op, argv[i + 1]}
    i = i + 2
  else
    error("zrepl-reconcile: bad operation list at argument " .. i)
  end
end
local results = {}
for n = 1, #ops do
  local op = ops[n]
  if op[1] == "bookmark" then
    results[n] = zfs.sync.bookmark(op[2], op[3])
  else
    results[n] = zfs.sync.destroy(op[2])
  end
end
return results
