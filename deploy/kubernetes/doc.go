// Package kubernetes holds protoherb's Kubernetes manifests (the YAML files beside this one) and
// the test that keeps them in step with the program: distributed training as an Indexed Job with a
// headless Service, prototypes in shards with their merge, and the server as a Deployment.
package kubernetes
