// Validates ServiceMonitor objects (JSON files named on the command line) against the
// prometheus-operator monitoring.coreos.com/v1 schema that @kubernetes-models ships
// (generated from the operator's Go API types). Prints `ok FILE` or the errors; exits 1
// if any file fails. Used by tests/it/deploy_kubernetes.rs.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

let failed = false;
for (const file of process.argv.slice(2)) {
  const object = JSON.parse(readFileSync(file, "utf8"));
  try {
    if (object.apiVersion !== "monitoring.coreos.com/v1" || object.kind !== "ServiceMonitor") {
      throw new Error(`not a monitoring.coreos.com/v1 ServiceMonitor: ${object.apiVersion} ${object.kind}`);
    }
    new ServiceMonitor(object).validate();
    console.log(`ok ${file}`);
  } catch (e) {
    failed = true;
    console.log(`invalid ${file}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
