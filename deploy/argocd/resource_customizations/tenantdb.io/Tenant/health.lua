-- Argo CD health check for tenantdb.io/Tenant (runs in Argo CD's gopher-lua, Lua 5.1 syntax).
-- `obj` is the live object; the script returns {status = ..., message = ...}.
--
--   no status, or status.observedGeneration < metadata.generation  -> Progressing
--   being deleted (deletionTimestamp or phase Deleting)             -> Progressing
--   Ready=True (for the current generation)                         -> Healthy
--   Ready=False, reason InvalidSpec or Conflict                     -> Degraded (needs a spec change)
--   Ready=False and Degraded=True (transient error, retrying)       -> Degraded
--   Ready=False, reason Provisioning, Unschedulable (waiting for a
--     database server with room; Degraded=False), or anything else  -> Progressing
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
  hs.message = "Deleting: the operator is carrying out the deletion policy"
  if status ~= nil then
    local degraded = condition(status, "Degraded")
    if degraded ~= nil and degraded.status == "True" then
      hs.message = "Deleting: " .. describe(degraded, "cleanup is being retried")
    end
  end
  return hs
end

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if status.phase == "Deleting" then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator is carrying out the deletion policy"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition (phase " .. tostring(status.phase or "Pending") .. ")"
  return hs
end

if ready.status == "True" then
  if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    hs.status = "Progressing"
    hs.message = "Ready condition is from generation " .. tostring(ready.observedGeneration)
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

if ready.reason == "InvalidSpec" or ready.reason == "Conflict" then
  hs.status = "Degraded"
  hs.message = describe(ready, "the spec cannot be provisioned")
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "provisioning is failing and being retried")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Provisioning")
return hs
