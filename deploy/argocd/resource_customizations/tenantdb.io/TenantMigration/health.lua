-- Argo CD health check for tenantdb.io/TenantMigration (runs in Argo CD's gopher-lua, Lua 5.1 syntax).
--
--   no status, or status.observedGeneration < metadata.generation  -> Progressing
--   phase Succeeded                                                 -> Healthy
--   phase Failed                                                    -> Degraded
--   phase Paused                                                    -> Suspended
--   phase Pending / Running                                         -> Progressing
--   any other phase                                                 -> Unknown
local hs = {}

local function message(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  if status.conditions ~= nil then
    -- Prefer the condition that explains the phase; fall back to the first one with a message.
    local first = nil
    for _, c in ipairs(status.conditions) do
      if c.message ~= nil and c.message ~= "" then
        if c.type == "Ready" or c.type == "Succeeded" or c.type == "Failed" or c.type == "Progressing" then
          return c.message
        end
        if first == nil then
          first = c.message
        end
      end
    end
    if first ~= nil then
      return first
    end
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message(status, "Migration succeeded")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message(status, "Migration failed")
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message(status, "Migration paused")
elseif phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = message(status, "Migration " .. string.lower(phase))
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
