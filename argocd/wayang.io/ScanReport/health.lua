-- Argo CD health of a wayang.io ScanReport (docs/argocd.md has the table and the reasons).
-- Written for the sandbox of an argocd-cm customization: base and table libraries only.
-- The health says whether the scan worked, not whether a plugin may run: that is each
-- policy's decision and shows on the Plugin (Blocked, reason ScanFailed).

-- Every report status (api/scan.py ScanStatus).
local REPORTS = {
  PASSED = "Healthy",
  WARNING = "Healthy",
  FAILED = "Healthy",
  ERROR = "Degraded",
}

local hs = {}
local status = obj.status
local generation = obj.metadata.generation
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the scan"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to scan generation " .. generation
  return hs
end
local failure = status.lastError
if failure ~= nil then
  hs.status = "Degraded"
  hs.message = tostring(failure.type) .. ": " .. tostring(failure.message)
  if failure.retryable and status.nextScanAt ~= nil then
    hs.message = hs.message .. " (retried at " .. status.nextScanAt .. ")"
  end
  return hs
end
local report = status.report
if report == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the scan"
  return hs
end
local health = REPORTS[report.status]
if health == nil then
  hs.status = "Unknown"
  hs.message = "report status " .. tostring(report.status) .. " is unknown to this health check"
  return hs
end
hs.status = health
local summary = report.summary or {}
hs.message = report.status .. ": " .. (summary.criticalCount or 0) .. " critical, "
  .. (summary.highCount or 0) .. " high, " .. (summary.mediumCount or 0) .. " medium, "
  .. (summary.lowCount or 0) .. " low"
if report.timestamp ~= nil then
  hs.message = hs.message .. "; scanned " .. report.timestamp
end
return hs
