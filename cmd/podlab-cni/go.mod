module podlab/cmd/podlab-cni

go 1.19
