package testkube

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
)

// DefaultNamespace is the namespace of namespaced objects whose manifest
// names none.
const DefaultNamespace = "default"

// maxAnswer bounds what is read of one answer of the API server.
const maxAnswer = 64 << 20

// Object identifies one document of a manifest.
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string // empty for cluster-scoped objects
}

func (o Object) String() string {
	if o.Namespace != "" {
		return fmt.Sprintf("%s %s %s/%s", o.APIVersion, o.Kind, o.Namespace, o.Name)
	}
	return fmt.Sprintf("%s %s %s", o.APIVersion, o.Kind, o.Name)
}

// ApplyDryRun server-side applies every document of the YAML stream docs
// with dryRun=All: the API server defaults, validates and admits each
// object as it would store it, and stores nothing. Namespaces the objects
// are in are created for real first. It returns the errors of all the
// documents that were rejected, joined, each naming its object and quoting
// the server's message.
func (c *Cluster) ApplyDryRun(tb testing.TB, docs []byte) error {
	tb.Helper()
	return c.apply(tb, docs, true)
}

// Apply server-side applies every document of the YAML stream docs for
// real, creating namespaces as needed; see ApplyDryRun.
func (c *Cluster) Apply(tb testing.TB, docs []byte) error {
	tb.Helper()
	return c.apply(tb, docs, false)
}

func (c *Cluster) apply(tb testing.TB, docs []byte, dryRun bool) error {
	tb.Helper()
	parts, err := SplitYAML(docs)
	if err != nil {
		return err
	}
	var errs []error
	for _, doc := range parts {
		obj, err := identify(doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if obj == nil {
			continue // an empty document
		}
		if err := c.applyOne(tb, *obj, doc, dryRun); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) applyOne(tb testing.TB, obj Object, doc []byte, dryRun bool) error {
	tb.Helper()
	res, err := c.resource(obj.APIVersion, obj.Kind)
	if err != nil {
		return fmt.Errorf("%v: %w", obj, err)
	}
	if !res.Namespaced {
		obj.Namespace = ""
	} else if obj.Namespace == "" {
		obj.Namespace = DefaultNamespace
	}
	if obj.Namespace != "" {
		if err := c.ensureNamespace(obj.Namespace); err != nil {
			return fmt.Errorf("%v: %w", obj, err)
		}
	}
	q := url.Values{"fieldManager": {FieldManager}, "force": {"true"}}
	if dryRun {
		q.Set("dryRun", "All")
	}
	path := c.resourcePath(obj.APIVersion, obj.Namespace, res.Name) + "/" + url.PathEscape(obj.Name) + "?" + q.Encode()
	status, body, err := c.do(http.MethodPatch, path, "application/apply-patch+yaml", doc)
	if err != nil {
		return fmt.Errorf("%v: %w", obj, err)
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return fmt.Errorf("%v: %d %s: %s", obj, status, http.StatusText(status), statusMessage(body))
	}
	return nil
}

// SplitYAML splits a YAML stream into its documents at lines that start
// with "---" followed by nothing but blanks or a comment, as kubectl does.
func SplitYAML(stream []byte) ([][]byte, error) {
	var docs [][]byte
	var cur bytes.Buffer
	r := bufio.NewReader(bytes.NewReader(stream))
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if rest, ok := bytes.CutPrefix(line, []byte("---")); ok {
				if t := bytes.TrimSpace(rest); len(t) == 0 || t[0] == '#' {
					docs = append(docs, bytes.Clone(cur.Bytes()))
					cur.Reset()
					continue
				}
			}
			cur.Write(line)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	docs = append(docs, cur.Bytes())
	return docs, nil
}

// identify returns the object a document describes, nil for a document
// with nothing but comments.
func identify(doc []byte) (*Object, error) {
	var m struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
	}
	var v interface{}
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("parse YAML document: %w", err)
	}
	if v == nil {
		return nil, nil
	}
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("parse YAML document: %w", err)
	}
	if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
		return nil, fmt.Errorf("YAML document without apiVersion, kind or metadata.name: %.200q", doc)
	}
	return &Object{APIVersion: m.APIVersion, Kind: m.Kind, Name: m.Metadata.Name, Namespace: m.Metadata.Namespace}, nil
}

// apiResource is an entry of a group version's resource list.
type apiResource struct {
	Name       string `json:"name"`
	Namespaced bool   `json:"namespaced"`
	Kind       string `json:"kind"`
}

// resource finds the resource of kind in apiVersion through discovery,
// asked afresh every time: CRDs add resources.
func (c *Cluster) resource(apiVersion, kind string) (apiResource, error) {
	status, body, err := c.do(http.MethodGet, c.groupVersionPath(apiVersion), "", nil)
	if err != nil {
		return apiResource{}, err
	}
	if status == http.StatusNotFound {
		return apiResource{}, fmt.Errorf("the server does not serve %s (no such API group or version; a CRD not installed?)", apiVersion)
	}
	if status != http.StatusOK {
		return apiResource{}, fmt.Errorf("discovery of %s: %d %s: %s", apiVersion, status, http.StatusText(status), statusMessage(body))
	}
	var list struct {
		Resources []apiResource `json:"resources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return apiResource{}, fmt.Errorf("discovery of %s: %w", apiVersion, err)
	}
	for _, r := range list.Resources {
		if r.Kind == kind && !strings.Contains(r.Name, "/") {
			return r, nil
		}
	}
	return apiResource{}, fmt.Errorf("the server serves no kind %s in %s", kind, apiVersion)
}

// groupVersionPath is the discovery path of apiVersion: /api/v1 for the
// core group, /apis/GROUP/VERSION for the others.
func (c *Cluster) groupVersionPath(apiVersion string) string {
	if !strings.Contains(apiVersion, "/") {
		return "/api/" + apiVersion
	}
	return "/apis/" + apiVersion
}

// resourcePath is the collection path of resource in apiVersion, within
// namespace when it is not empty.
func (c *Cluster) resourcePath(apiVersion, namespace, resource string) string {
	p := c.groupVersionPath(apiVersion)
	if namespace != "" {
		p += "/namespaces/" + url.PathEscape(namespace)
	}
	return p + "/" + resource
}

// ensureNamespace creates namespace for real unless it exists.
func (c *Cluster) ensureNamespace(ns string) error {
	if c.namespaces[ns] {
		return nil
	}
	status, body, err := c.do(http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(ns), "", nil)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		doc, _ := json.Marshal(map[string]interface{}{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]string{"name": ns},
		})
		status, body, err = c.do(http.MethodPost, "/api/v1/namespaces", "application/json", doc)
		if err != nil {
			return err
		}
		if status != http.StatusCreated && status != http.StatusConflict {
			return fmt.Errorf("create namespace %s: %d %s: %s", ns, status, http.StatusText(status), statusMessage(body))
		}
	default:
		return fmt.Errorf("get namespace %s: %d %s: %s", ns, status, http.StatusText(status), statusMessage(body))
	}
	c.namespaces[ns] = true
	return nil
}

// WaitEstablished waits until the CRDs named (plural.group) are
// established and their kinds are in discovery, for at most timeout.
func (c *Cluster) WaitEstablished(tb testing.TB, timeout time.Duration, names ...string) error {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for _, name := range names {
		for {
			ok, why, err := c.established(name)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established after %v: %s", name, timeout, why)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// established reports whether CRD name is established and every served
// version's kind is in discovery, and if not, why.
func (c *Cluster) established(name string) (bool, string, error) {
	status, body, err := c.do(http.MethodGet, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+url.PathEscape(name), "", nil)
	if err != nil {
		return false, "", err
	}
	if status == http.StatusNotFound {
		return false, "not found", nil
	}
	if status != http.StatusOK {
		return false, "", fmt.Errorf("get CRD %s: %d %s: %s", name, status, http.StatusText(status), statusMessage(body))
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
			} `json:"versions"`
		} `json:"spec"`
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  string `json:"status"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &crd); err != nil {
		return false, "", fmt.Errorf("CRD %s: %w", name, err)
	}
	established := false
	var why []string
	for _, cond := range crd.Status.Conditions {
		if cond.Type == "Established" && cond.Status == "True" {
			established = true
		}
		why = append(why, fmt.Sprintf("%s=%s %s", cond.Type, cond.Status, cond.Message))
	}
	if !established {
		return false, "conditions: " + strings.Join(why, "; "), nil
	}
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		if _, err := c.resource(crd.Spec.Group+"/"+v.Name, crd.Spec.Names.Kind); err != nil {
			return false, "established, but: " + err.Error(), nil
		}
	}
	return true, "", nil
}

// do sends a request to the API server and returns the status and body of
// the answer.
func (c *Cluster) do(method, path, contentType string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, answer, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return resp.StatusCode, answer, nil
}

// statusMessage is the message of a metav1.Status answer, or the answer.
func statusMessage(body []byte) string {
	var st struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
		return st.Message
	}
	return strings.TrimSpace(string(body))
}
