"""The lab's control plane: a Kubernetes API subset (`podlab.kubeapi`) and the controllers
behind it — a scheduler, a node runtime per node (the kubelet stand-in that calls the CNI),
endpoints, StatefulSets and kube-proxy — all running in the lab's own process."""
