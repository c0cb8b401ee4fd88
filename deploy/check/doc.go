// Package check holds the tests of fleetmeter's deployment artifacts, run without Docker
// or a cluster: the Helm chart rendered by the Helm library and decoded strictly into the
// Kubernetes API types, the compose stack loaded and validated by the compose-spec
// library, the Dockerfile and the CI workflow. It is its own module so the Helm,
// Kubernetes and compose dependencies stay out of the product's module (`make test` runs
// it as deploy-check).
package check
