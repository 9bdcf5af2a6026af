-- Argo CD health check for tenantdb.io/DatabaseServer (runs in Argo CD's gopher-lua, Lua 5.1 syntax).
-- `obj` is the live object; the script returns {status = ..., message = ...}.
--
--   being deleted (deletionTimestamp; DeletionBlocked=True while tenants are placed) -> Progressing
--   no status, or status.observedGeneration < metadata.generation, or no Ready yet    -> Progressing
--   Ready=True                                      -> Healthy, also when full or cordoned
--                                                      (Schedulable=False NoRoom/Cordoned: in the message)
--   Ready=False, reason NameReserved or InvalidSpec
--                                                   -> Degraded (needs a change to the object or its Secret)
--   Ready=False, any other reason (Unreachable, DatabaseUnavailable, KubernetesError; probed again)
--                                                   -> Degraded
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local msg = c.message
  if msg == nil or msg == "" then
    msg = fallback
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason .. ": " .. msg
  end
  return msg
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator releases the server once no tenant is placed on it"
  if status ~= nil then
    local blocked = condition(status, "DeletionBlocked")
    if blocked ~= nil and blocked.status == "True" then
      local msg = blocked.message
      if msg == nil or msg == "" then
        msg = "tenants are placed on this server"
      end
      hs.message = "DeletionBlocked: " .. msg
    end
  end
  return hs
end

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil or (ready.status ~= "True" and ready.status ~= "False") then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  if hs.message == nil or hs.message == "" then
    hs.message = "Ready"
  end
  -- A full or cordoned server is healthy: it serves the tenants it holds, it only takes no new one.
  local schedulable = condition(status, "Schedulable")
  if schedulable ~= nil and schedulable.status == "False" then
    if schedulable.reason == "Cordoned" then
      hs.message = hs.message .. "; Cordoned: no new tenants are placed on this server"
    else
      hs.message = hs.message .. "; " .. describe(schedulable, "no new tenants can be placed")
    end
  end
  return hs
end

if ready.reason == "NameReserved" or ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = describe(ready, "the server cannot be used until the DatabaseServer (or its Secret) is changed")
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready, "the server is not usable (probed again)")
return hs
