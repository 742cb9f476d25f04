-- Argo CD health of a wayang.io PluginApproval (docs/argocd.md has the table and the reasons).
-- Written for the sandbox of an argocd-cm customization: base and table libraries only.
-- The operator writes the phase once the Plugin the approval names exists.

-- Every phase (api/resources.py ApprovalPhase).
local PHASES = {
  Pending = "Progressing",
  InForce = "Healthy",
  Stale = "Suspended",
  Ignored = "Degraded",
}

local hs = {}
local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to count the approval (the Plugin it names must exist)"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to evaluate generation " .. generation
  return hs
end
local health = PHASES[status.phase]
if health == nil then
  hs.status = "Unknown"
  hs.message = "phase " .. tostring(status.phase) .. " is unknown to this health check"
  return hs
end
hs.status = health
if status.message ~= nil then
  hs.message = status.phase .. ": " .. status.message
else
  hs.message = status.phase
end
return hs
