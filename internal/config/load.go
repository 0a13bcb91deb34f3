package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every configuration environment variable.
const EnvPrefix = "BPAGENTS_"

// Load builds a configuration from the defaults, then the YAML file at path
// (if path is not empty), then BPAGENTS_* variables in environ. Unknown YAML
// keys are errors. The result is not yet validated: apply flags, then call
// Validate.
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		if err := keepResourceDefaults(data, &c, Default().Market.Resources); err != nil {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	return c, nil
}

// EnvVars lists every variable Load understands, with its YAML path.
func EnvVars() map[string]string {
	out := map[string]string{}
	d := Default()
	walk(reflect.ValueOf(&d).Elem(), "", func(path string, _ reflect.Value) {
		out[envName(path)] = path
	})
	return out
}

func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(path))
}

func applyEnv(c *Config, environ []string) error {
	vars := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	var errs []error
	walk(reflect.ValueOf(c).Elem(), "", func(path string, field reflect.Value) {
		v, ok := vars[envName(path)]
		if !ok {
			return
		}
		if err := setFromString(field, v); err != nil {
			errs = append(errs, &FieldError{Field: path, Msg: fmt.Sprintf("from %s: %v", envName(path), err)})
		}
	})
	return errors.Join(errs...)
}

// walk calls fn for every settable leaf field, with its dotted YAML path. Maps
// of structs (market.resources) are expanded by key.
func walk(v reflect.Value, prefix string, fn func(path string, field reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Struct && fv.Type().String() != "time.Time":
			walk(fv, path, fn)
		case fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.Struct:
			keys := make([]string, 0, fv.Len())
			for _, k := range fv.MapKeys() {
				keys = append(keys, k.String())
			}
			sort.Strings(keys)
			for _, k := range keys {
				elem := reflect.New(fv.Type().Elem()).Elem()
				elem.Set(fv.MapIndex(reflect.ValueOf(k)))
				walk(elem, path+"."+k, fn)
				fv.SetMapIndex(reflect.ValueOf(k), elem)
			}
		default:
			fn(path, fv)
		}
	}
}

// setFromString parses s as YAML into the field, so durations ("2s"),
// amounts ("0.5") and numbers use the same rules as the file.
func setFromString(field reflect.Value, s string) error {
	ptr := reflect.New(field.Type())
	if field.Kind() == reflect.String {
		field.SetString(s)
		return nil
	}
	if err := yaml.Unmarshal([]byte(s), ptr.Interface()); err != nil {
		return err
	}
	field.Set(ptr.Elem())
	return nil
}

// keepResourceDefaults refills, for each resource the file names, the fields
// the file leaves out. yaml.v3 decodes every map entry into a fresh zero
// value, so without this a file that sets only market.resources.cpu.capacity
// would silently zero cpu's price, floor and ceiling.
func keepResourceDefaults(data []byte, c *Config, defaults map[string]Resource) error {
	var raw struct {
		Market struct {
			Resources map[string]map[string]yaml.Node `yaml:"resources"`
		} `yaml:"market"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	for name, given := range raw.Market.Resources {
		def, known := defaults[name]
		r, have := c.Market.Resources[name]
		if !known || !have {
			continue
		}
		rv, dv := reflect.ValueOf(&r).Elem(), reflect.ValueOf(def)
		for i := 0; i < rv.NumField(); i++ {
			tag := strings.Split(rv.Type().Field(i).Tag.Get("yaml"), ",")[0]
			if _, set := given[tag]; !set {
				rv.Field(i).Set(dv.Field(i))
			}
		}
		c.Market.Resources[name] = r
	}
	return nil
}
