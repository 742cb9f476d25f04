-- Argo CD health of a wayang.io Plugin (docs/argocd.md has the table and the reasons).
-- Written for the sandbox of an argocd-cm customization: base and table libraries only, so
-- no string functions. The conditions are authoritative: they are walked in the operator's
-- gate order and the first whose reason is not healthy decides; the phase is the fallback
-- (no conditions) and the message's prefix.

-- BEGIN GENERATED: python -m wayang_operator.schemagen.argocd (from core/reasons.py)
-- Every condition reason the operator writes, and its health.
local REASONS = {
  Valid = "Healthy",
  InvalidSpec = "Degraded",
  ContractViolation = "Degraded",
  SignatureVerified = "Healthy",
  SignatureNotRequired = "Healthy",
  SignatureInvalid = "Degraded",
  RegistryNotAllowed = "Degraded",
  Granted = "Healthy",
  CapabilityNotGranted = "Degraded",
  SecretNotAllowed = "Degraded",
  PoliciesDisagree = "Degraded",
  ScanPassed = "Healthy",
  ScanNotRequired = "Healthy",
  ScanPending = "Progressing",
  ScanFailed = "Degraded",
  ScanError = "Degraded",
  Approved = "Healthy",
  AutoApproved = "Healthy",
  AwaitingApproval = "Suspended",
  Rejected = "Degraded",
  Revoked = "Degraded",
  Resolved = "Healthy",
  Unresolved = "Progressing",
  DependencyCycle = "Degraded",
  NotManaged = "Healthy",
  Available = "Healthy",
  Deploying = "Progressing",
  RollingOut = "Progressing",
  ServingPreviousVersion = "Healthy",
  Unloaded = "Degraded",
  NotRunnable = "Degraded",
  SecretMissing = "Degraded",
  RenderRefused = "Degraded",
  WorkloadFailing = "Degraded",
  Quarantined = "Degraded",
  HalfOpen = "Degraded",
  RolledBack = "Degraded",
  NewVersionQuarantined = "Degraded",
  AllGatesPassed = "Healthy",
  Disabled = "Suspended",
  GateNotPassed = "Progressing",
  NotEvaluated = "Progressing",
}

-- Every phase, for a status without conditions.
local PHASES = {
  Pending = "Progressing",
  Invalid = "Degraded",
  Blocked = "Degraded",
  Scanning = "Progressing",
  AwaitingApproval = "Suspended",
  Rejected = "Degraded",
  Revoked = "Degraded",
  Unresolved = "Progressing",
  Deploying = "Progressing",
  Ready = "Healthy",
  Degraded = "Degraded",
  Quarantined = "Degraded",
  Disabled = "Suspended",
}
-- END GENERATED

local hs = {}
local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to evaluate the plugin"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to evaluate generation " .. generation
    .. " (the status is of generation " .. status.observedGeneration .. ")"
  return hs
end

local phase = status.phase or "(no phase)"
local ready = nil
local decisive = nil
local health = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
    if decisive == nil then
      local verdict = REASONS[condition.reason]
      if verdict == nil then
        verdict = "Unknown"
      end
      if verdict ~= "Healthy" then
        decisive = condition
        health = verdict
      end
    end
  end
end
if decisive == nil and ready == nil then
  health = PHASES[phase]
elseif decisive == nil then
  health = "Healthy"
end

hs.status = health or "Unknown"
if health == nil then
  hs.message = "phase " .. phase .. " is unknown to this health check"
elseif decisive ~= nil and REASONS[decisive.reason] == nil then
  hs.message = "reason " .. tostring(decisive.reason) .. " of " .. tostring(decisive.type)
    .. " is unknown to this health check"
elseif ready ~= nil and ready.message ~= nil then
  hs.message = phase .. ": " .. ready.message
elseif decisive ~= nil and decisive.message ~= nil then
  hs.message = phase .. ": " .. decisive.message
else
  hs.message = phase
end
return hs
