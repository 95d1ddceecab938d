// podlab-cni is the CNI plugin a container runtime runs once per pod (CNI spec 1.0.0 and
// 1.1.0).
//
// It stays thin: it checks the CNI protocol's input, hands the work to the node agent over
// its unix socket (the warm agent allocates the address and builds the interface, see
// podlab/cni/protocol.py), and prints the spec's result or error. It is compiled because
// the runtime starts it once per pod: a Python interpreter alone costs five times a Go
// plugin's whole start (docs/agent.md has the figures).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

var supportedVersions = []string{"1.0.0", "1.1.0"}

var commands = map[string]bool{
	"ADD": true, "DEL": true, "CHECK": true, "VERSION": true, "STATUS": true, "GC": true,
}

const (
	defaultSocket = "/run/podlab/agent.sock"
	agentTimeout  = 60 * time.Second
	maxAnswer     = 1 << 20
	ifnamsiz      = 16 // linux/if.h: a name's bytes and its NUL
	// notInIfname: what the kernel's dev_valid_name refuses (isspace is its ctype's).
	notInIfname = "/: \t\n\v\f\r\xa0"
	// CNI spec error codes; plugin-specific codes start at 100.
	incompatibleVersion = 1
	invalidEnvironment  = 4
	decodeFailure       = 6
	invalidConfig       = 7
	tryAgainLater       = 11
	pluginNotAvailable  = 50
	datapathFailed      = 100
)

// cniError is the spec's error object, printed on stdout with a non-zero exit.
type cniError struct {
	CniVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details"`
}

func (e *cniError) Error() string { return e.Msg }

func fail(code int, msg, details string) *cniError {
	return &cniError{Code: code, Msg: msg, Details: details}
}

// agentError is the agent's answer {"ok": false, "error": KIND, "message": ...}.
type agentError struct{ kind, message string }

func (e *agentError) Error() string { return e.kind + ": " + e.message }

// errUnavailable: nothing answers on the socket (the agent is down or not yet started).
var errUnavailable = errors.New("no agent answers")

type answer struct {
	OK      bool            `json:"ok"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Result  json.RawMessage `json:"result"`
}

func unavailable(path string, err error) error {
	return fmt.Errorf("%w on %s: %v", errUnavailable, path, err)
}

// call sends one request line and reads one answer line.
func call(path, op string, fields map[string]any) (*answer, error) {
	conn, err := net.DialTimeout("unix", path, agentTimeout)
	if errors.Is(err, syscall.EAGAIN) { // the listen backlog is full: a burst, not an outage
		return nil, &agentError{"busy", "the agent's socket is full: " + err.Error()}
	} else if err != nil {
		return nil, unavailable(path, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(agentTimeout)); err != nil {
		return nil, unavailable(path, err)
	}
	request := map[string]any{"op": op}
	for k, v := range fields {
		request[k] = v
	}
	line, _ := json.Marshal(request) // strings and string lists only: cannot fail
	// An agent over its connection cap answers `busy` and closes before reading: the
	// write may fail while the answer waits to be read.
	_, writeErr := conn.Write(append(line, '\n'))
	reply, err := bufio.NewReader(io.LimitReader(conn, maxAnswer)).ReadBytes('\n')
	var timeout net.Error
	if errors.As(err, &timeout) && timeout.Timeout() {
		return nil, &agentError{"busy", fmt.Sprintf("the agent did not answer within %v", agentTimeout)}
	}
	if len(reply) == 0 && writeErr != nil {
		return nil, unavailable(path, writeErr)
	}
	if len(reply) == 0 {
		return nil, fmt.Errorf("%w: the agent on %s closed the connection", errUnavailable, path)
	}
	var a answer
	if err := json.Unmarshal(reply, &a); err != nil {
		return nil, &agentError{"invalid", "the agent's answer is not JSON: " + err.Error()}
	}
	if !a.OK {
		if a.Error == "" {
			a.Error = "invalid"
		}
		return nil, &agentError{a.Error, a.Message}
	}
	return &a, nil
}

// ask calls the agent named by the config and turns its failures into CNI errors.
func ask(conf map[string]any, op string, fields map[string]any) (*answer, error) {
	socket, _ := conf["agent_socket"].(string)
	if socket == "" {
		socket = defaultSocket
	}
	a, err := call(socket, op, fields)
	var agentErr *agentError
	switch {
	case errors.As(err, &agentErr):
		code := tryAgainLater
		switch agentErr.kind {
		case "datapath", "invalid", "exists", "internal":
			code = datapathFailed
		case "argument":
			code = invalidEnvironment
		}
		return nil, fail(code, "podlab agent: "+agentErr.kind, agentErr.message)
	case err != nil:
		return nil, fail(tryAgainLater, "no podlab agent answers on this node", err.Error())
	}
	return a, nil
}

func env(name string) (string, error) {
	if value := os.Getenv(name); value != "" {
		return value, nil
	}
	return "", fail(invalidEnvironment, name+" is not set", name+" is required")
}

// pod is namespace/name from CNI_ARGS (as kubelet passes it), else the container id.
func pod() (string, error) {
	args := map[string]string{}
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			args[k] = v
		}
	}
	if args["K8S_POD_NAMESPACE"] != "" && args["K8S_POD_NAME"] != "" {
		return args["K8S_POD_NAMESPACE"] + "/" + args["K8S_POD_NAME"], nil
	}
	container, err := env("CNI_CONTAINERID")
	return "cni/" + container, err
}

// ifnameProblem says why Linux refuses name as an interface name ("" if it does not).
// The agent checks the same (podlab/cni/protocol.py): netlink's refusal once escaped it.
func ifnameProblem(name string) string {
	switch {
	case len(name) == 0 || len(name) >= ifnamsiz:
		return fmt.Sprintf("%q is %d bytes; Linux takes 1 to %d", name, len(name), ifnamsiz-1)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a name Linux takes", name)
	}
	for i := 0; i < len(name); i++ {
		if strings.IndexByte(notInIfname, name[i]) >= 0 {
			return fmt.Sprintf("%q has %q, which Linux refuses in a name", name, name[i])
		}
	}
	return ""
}

// validAttachments: GC's container ids, under the 1.1 spec's key or its draft's. The list
// is required: a GC without one is an invalid config, not "nothing is valid", which would
// release every live pod's address for the next pods to take.
func validAttachments(conf map[string]any) ([]string, error) {
	valid, ok := conf["cni.dev/valid-attachments"]
	if !ok {
		valid = conf["cni.dev/attachments"]
	}
	if valid == nil {
		return nil, fail(invalidConfig, "cni.dev/valid-attachments is missing",
			"GC releases every attachment it is not given: the list is required")
	}
	list, ok := valid.([]any)
	if !ok {
		return nil, fail(invalidConfig, "cni.dev/valid-attachments is not a list", "")
	}
	containers := []string{}
	for _, a := range list {
		attachment, ok := a.(map[string]any)
		id, isString := attachment["containerID"].(string)
		if !ok || !isString {
			return nil, fail(invalidConfig, "an attachment lacks its containerID", fmt.Sprint(a))
		}
		containers = append(containers, id)
	}
	return containers, nil
}

func supported(version string) bool {
	for _, v := range supportedVersions {
		if v == version {
			return true
		}
	}
	return false
}

// run executes one CNI command: the JSON to print on success (nil: print nothing).
func run(command string, conf map[string]any) (any, error) {
	version, _ := conf["cniVersion"].(string)
	if command == "VERSION" {
		if version == "" {
			version = supportedVersions[len(supportedVersions)-1]
		}
		return map[string]any{"cniVersion": version, "supportedVersions": supportedVersions}, nil
	}
	if !supported(version) {
		return nil, fail(incompatibleVersion, fmt.Sprintf("cniVersion %q is not supported", version),
			fmt.Sprintf("supported: %v", supportedVersions))
	}
	switch command {
	case "STATUS":
		if _, err := ask(conf, "status", nil); err != nil {
			return nil, fail(pluginNotAvailable, "the podlab agent is not available",
				err.(*cniError).Details)
		}
		return nil, nil
	case "GC":
		containers, err := validAttachments(conf)
		if err == nil {
			_, err = ask(conf, "gc_containers", map[string]any{"containers": containers})
		}
		return nil, err
	}
	container, err := env("CNI_CONTAINERID")
	if err != nil {
		return nil, err
	}
	ifname, err := env("CNI_IFNAME")
	if err != nil {
		return nil, err
	}
	if problem := ifnameProblem(ifname); problem != "" {
		return nil, fail(invalidEnvironment, "CNI_IFNAME is not an interface name", problem)
	}
	name, err := pod()
	if err != nil {
		return nil, err
	}
	fields := map[string]any{"pod": name, "container": container, "ifname": ifname}
	if command == "DEL" {
		fields["netns"] = os.Getenv("CNI_NETNS")
		_, err := ask(conf, "del", fields)
		return nil, err
	}
	if fields["netns"], err = env("CNI_NETNS"); err != nil {
		return nil, err
	}
	if command == "CHECK" {
		_, err := ask(conf, "check", fields)
		return nil, err
	}
	fields["cni_version"] = version
	a, err := ask(conf, "add", fields)
	if err != nil {
		return nil, err
	}
	return a.Result, nil
}

// configuration reads the network configuration from stdin (empty stdin is {}).
func configuration() (map[string]any, error) {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fail(decodeFailure, "network configuration cannot be read", err.Error())
	}
	if len(data) == 0 {
		return map[string]any{}, nil
	}
	var conf any
	if err := json.Unmarshal(data, &conf); err != nil {
		return nil, fail(decodeFailure, "network configuration is not JSON", err.Error())
	}
	object, ok := conf.(map[string]any)
	if !ok {
		return nil, fail(invalidConfig, "network configuration is not a JSON object", "")
	}
	return object, nil
}

func main() {
	command := os.Getenv("CNI_COMMAND")
	version := supportedVersions[len(supportedVersions)-1]
	var output any
	var err error
	if !commands[command] {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		err = fail(invalidEnvironment, "invalid CNI_COMMAND",
			fmt.Sprintf("CNI_COMMAND=%q; expected one of %v", command, names))
	} else if conf, confErr := configuration(); confErr != nil {
		err = confErr
	} else {
		if v, ok := conf["cniVersion"].(string); ok && v != "" {
			version = v
		}
		output, err = run(command, conf)
	}
	out := json.NewEncoder(os.Stdout)
	var failure *cniError
	if errors.As(err, &failure) {
		failure.CniVersion = version
		_ = out.Encode(failure)
		os.Exit(1)
	}
	if output != nil {
		if raw, ok := output.(json.RawMessage); ok {
			_, _ = os.Stdout.Write(append(raw, '\n'))
		} else {
			_ = out.Encode(output)
		}
	}
}
