"""The lab's control plane: a Kubernetes API subset (`podlab.kubeapi`) served for the lab,
the controllers of `podlab.controllers` wired to it, and a node runtime per node (the
kubelet stand-in that calls the CNI), all running in the lab's own process."""
