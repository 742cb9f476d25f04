// Command luahealth runs an Argo CD health check (a resource_customizations health.lua) the way
// Argo CD's application controller runs it, so the project's tests execute the real script
// instead of reading it.
//
// What it copies from Argo CD (util/lua/lua.go): the interpreter (gopher-lua); the sandbox of a
// script configured in argocd-cm (only the package, base and table libraries and a "safe" os
// library with time and date; string and math are absent unless -open-libs, which is what
// Argo CD gives its built-in scripts and `resource.customizations.useOpenLibs`); a one-second
// deadline; the live object as the global `obj`, converted the way Argo CD converts an
// unstructured object (maps become tables, arrays 1-based tables, integers and floats numbers);
// and the result read back through layeh.com/gopher-json, with a status Argo CD does not know
// turned into Unknown with Argo CD's own message.
//
// Usage: luahealth [-open-libs] HEALTH_LUA < objects. Stdin holds one or more JSON objects
// (e.g. `kubectl get -o json` output, or JSON lines); each runs in a fresh interpreter, as each
// health assessment does in Argo CD, and prints one line {"status": ..., "message": ...}, or
// {"error": ...} when the script fails (the exit code is then 1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// The health statuses Argo CD accepts (gitops-engine pkg/health).
var valid = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

const invalidHealthStatus = "Lua returned an invalid health status"

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	openLibs := flag.Bool("open-libs", false, "open every standard library (Argo CD's built-in scripts, useOpenLibs)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: luahealth [-open-libs] HEALTH_LUA < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	decoder := json.NewDecoder(os.Stdin)
	decoder.UseNumber()
	out := json.NewEncoder(os.Stdout)
	failed := false
	for {
		var object map[string]interface{}
		if err := decoder.Decode(&object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "reading stdin:", err)
			os.Exit(2)
		}
		health, err := assess(normalize(object).(map[string]interface{}), string(script), *openLibs)
		if err != nil {
			failed = true
			health = result{Error: err.Error()}
		}
		if err := out.Encode(health); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// normalize turns json.Number into int64 or float64, as Kubernetes' unstructured decoding does.
func normalize(value interface{}) interface{} {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []interface{}:
		for i := range v {
			v[i] = normalize(v[i])
		}
		return v
	case map[string]interface{}:
		for k := range v {
			v[k] = normalize(v[k])
		}
		return v
	}
	return value
}

func assess(object map[string]interface{}, script string, openLibs bool) (result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{}, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, object))
	if err := l.DoString(script); err != nil {
		return result{}, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return result{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return result{}, err
	}
	var health result
	if err := json.Unmarshal(encoded, &health); err != nil {
		return result{}, err
	}
	if !valid[health.Status] {
		return result{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return health, nil
}

// decodeValue is Argo CD's conversion of an unstructured object into Lua values.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		array := l.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(decodeValue(l, item))
		}
		return array
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return table
	}
	return lua.LNil
}

// The safe subset of the os library Argo CD exposes: time and date, nothing that touches the
// process, the environment or files.
var osFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, osFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), osFuncs))
	return 1
}

func intField(table *lua.LTable, key string, fallback int) int {
	if n, ok := table.RawGetString(key).(lua.LNumber); ok {
		return int(n)
	}
	return fallback
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	moment := time.Date(intField(t, "year", -1), time.Month(intField(t, "month", -1)), intField(t, "day", -1),
		intField(t, "hour", 12), intField(t, "min", 0), intField(t, "sec", 0), 0, time.Local)
	l.Push(lua.LNumber(moment.Unix()))
	return 1
}

var dateFlags = strings.NewReplacer("%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04", "%S", "05", "%c", "02 Jan 06 15:04 MST")

func osDate(l *lua.LState) int {
	moment := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			moment = moment.UTC()
			format = strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			moment = time.Unix(l.CheckInt64(2), 0)
		}
	}
	if strings.HasPrefix(format, "*t") {
		t := l.NewTable()
		for key, value := range map[string]int{
			"year": moment.Year(), "month": int(moment.Month()), "day": moment.Day(), "hour": moment.Hour(),
			"min": moment.Minute(), "sec": moment.Second(), "wday": int(moment.Weekday()) + 1,
		} {
			t.RawSetString(key, lua.LNumber(value))
		}
		l.Push(t)
		return 1
	}
	l.Push(lua.LString(moment.Format(dateFlags.Replace(format))))
	return 1
}
