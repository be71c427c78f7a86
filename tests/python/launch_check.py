"""Static reading of launch/eloss_perception.launch.{py,xml} (the launch
packages are not installable here). Prints JSON with what each file names:
declared arguments with defaults, the node's package/executable/name,
parameter files and inline parameter names, remaps, and LaunchConfiguration
references. The Rust test tests/launch_files.rs checks it against the node.

  launch_check.py PY XML
  launch_check.py --command PREFIX PARAMS_DIR PY XML [name:=value ...]

--command prints, for each file, the command line `ros2 launch` (launch_ros
0.26, Jazzy) would run for our node from an install prefix PREFIX (a colcon
workspace's install/eloss_perception) with those launch arguments: the
executable from PREFIX/lib/<package>, the node's `arguments`, then
`--ros-args -r __node:=NAME -r __ns:=NS`, one `--params-file` per parameter
entry (inline parameters are written, as launch_ros does, to a
`launch_params_*` YAML file keyed by the node's full name, here in
PARAMS_DIR) and one `-r from:=to` per remap. scripts/colcon_check.sh starts
the installed node with it.
"""
import ast
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET


def const(node):
    return node.value if isinstance(node, ast.Constant) else None


def describe_py(path):
    tree = ast.parse(open(path).read(), path)
    out = {"args": {}, "nodes": [], "refs": set()}
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "id", getattr(call.func, "attr", None))
        kw = {k.arg: k.value for k in call.keywords}
        if name == "LaunchConfiguration":
            out["refs"].add(const(call.args[0]))
        elif name == "DeclareLaunchArgument":
            d = kw.get("default_value")
            default = const(d) if d is not None else None
            if isinstance(d, ast.Name):  # a PathJoinSubstitution built above
                default = "<package share>/" + "/".join(_path_join_parts(tree, d.id))
            out["args"][const(call.args[0])] = default
        elif name == "Node":
            node = {k: const(kw[k]) for k in ("package", "executable", "name") if k in kw}
            node["param_files"], node["param_names"], node["remaps"] = [], [], []
            node["arguments"] = [_argument(tree, a) for a in getattr(kw.get("arguments"), "elts", [])]
            node["condition"] = _condition(kw.get("condition"))
            node["namespace"] = _argument(tree, kw["namespace"]) if "namespace" in kw else None
            # in launch order, values as text ($(var x), <package share>/...)
            node["params"], node["remap_pairs"] = [], []
            for p in getattr(kw.get("parameters"), "elts", []):
                if isinstance(p, ast.Dict):
                    node["param_names"] += [const(k) for k in p.keys]
                    node["params"].append({"values": {const(k): _argument(tree, v) for k, v in zip(p.keys, p.values)}})
                else:
                    node["param_files"].append(ast.unparse(p))
                    node["params"].append({"file": _argument(tree, p)})
            remaps = kw.get("remappings")
            if isinstance(remaps, ast.Name):  # a list assigned above
                remaps = _assigned(tree, remaps.id)
            for r in getattr(remaps, "elts", []):
                node["remaps"].append(const(r.elts[0]))
                node["remap_pairs"].append([const(r.elts[0]), _argument(tree, r.elts[1])])
            out["nodes"].append(node)
    out["refs"] = sorted(r for r in out["refs"] if r)
    return out


def _assigned(tree, var):
    for a in ast.walk(tree):
        if isinstance(a, ast.Assign) and getattr(a.targets[0], "id", None) == var:
            return a.value
    return None


def _argument(tree, a):
    """A node argument as text: constants as they are, LaunchConfiguration('x')
    as $(var x), a package-share path as <package share>/..."""
    if const(a) is not None:
        return const(a)
    if isinstance(a, ast.Call) and getattr(a.func, "id", None) == "LaunchConfiguration":
        return f"$(var {const(a.args[0])})"
    if isinstance(a, ast.Name):
        return "<package share>/" + "/".join(_path_join_parts(tree, a.id))
    return ast.unparse(a)


def _condition(c):
    """IfCondition(LaunchConfiguration('x')) as $(var x); None without a condition."""
    if c is None:
        return None
    inner = c.args[0] if isinstance(c, ast.Call) and c.args else None
    if isinstance(inner, ast.Call) and getattr(inner.func, "id", None) == "LaunchConfiguration":
        return f"$(var {const(inner.args[0])})"
    return ast.unparse(c)


def _path_join_parts(tree, var):
    for a in ast.walk(tree):
        if isinstance(a, ast.Assign) and getattr(a.targets[0], "id", None) == var:
            parts = a.value.args[0].elts
            return [const(p) for p in parts if const(p) is not None]
    return []


def _xml_words(args):
    """Whitespace-separated words, keeping $(...) substitutions whole."""
    args = re.sub(r"\$\(find-pkg-share [^)]+\)", "<package share>", args)
    return re.findall(r"(?:\$\([^)]*\)|<package share>|\S)+", args)


def describe_xml(path):
    root = ET.parse(path).getroot()
    out = {"args": {}, "nodes": [], "refs": set()}
    for a in root.findall("arg"):
        d = a.get("default")
        if d is not None:
            d = re.sub(r"\$\(find-pkg-share [^)]+\)", "<package share>", d)
        out["args"][a.get("name")] = d
    text = ET.tostring(root, encoding="unicode")
    out["refs"] = sorted(set(re.findall(r"\$\(var ([A-Za-z0-9_]+)\)", text)))
    for n in root.findall("node"):
        node = {"package": n.get("pkg"), "executable": n.get("exec"), "name": n.get("name"),
                "param_files": [], "param_names": [], "remaps": [], "condition": n.get("if"),
                "arguments": _xml_words(n.get("args", "")), "namespace": n.get("namespace"),
                "params": [], "remap_pairs": []}
        for p in n.findall("param"):
            if p.get("from"):
                node["param_files"].append(p.get("from"))
                node["params"].append({"file": _xml_share(p.get("from"))})
            else:
                node["param_names"].append(p.get("name"))
                # launch_ros makes each inline <param> a dictionary of its own
                node["params"].append({"values": {p.get("name"): _xml_share(p.get("value"))}})
        node["remaps"] = [r.get("from") for r in n.findall("remap")]
        node["remap_pairs"] = [[r.get("from"), _xml_share(r.get("to"))] for r in n.findall("remap")]
        out["nodes"].append(node)
    return out


def _xml_share(text):
    return None if text is None else re.sub(r"\$\(find-pkg-share [^)]+\)", "<package share>", text)


def _make_absolute(ns):
    """launch_ros.utilities: make_namespace_absolute(prefix_namespace(None, ns))."""
    ns = ns.rstrip("/") if ns != "/" else ns
    return ns if ns.startswith("/") else "/" + ns


def command_line(desc, prefix, launch_args, params_dir):
    """The command launch_ros (Jazzy, 0.26) builds for our node in DESC."""
    import yaml  # the venv's PyYAML, as launch_ros uses
    args = dict(desc["args"])
    for k, v in launch_args.items():
        if k not in args:
            raise SystemExit(f"launch argument {k!r} is not declared (declared: {sorted(args)})")
        args[k] = v
    node = next(n for n in desc["nodes"] if n["package"] == "eloss_perception")
    share = os.path.join(prefix, "share", node["package"])

    def subst(text):
        for _ in range(5):  # defaults may themselves hold substitutions
            text = re.sub(r"\$\(var ([A-Za-z0-9_]+)\)", lambda m: args[m.group(1)], text)
            text = text.replace("<package share>", share)
        if "$(" in text or "<package" in text:
            raise SystemExit(f"unresolved substitution in {text!r}")
        return text

    exe = os.path.join(prefix, "lib", node["package"], node["executable"])
    cmd = [exe] + [subst(a) for a in node["arguments"]]
    cmd += ["--ros-args", "-r", f"__node:={node['name']}"]
    full_name = "/" + node["name"]
    if node["namespace"] is not None:
        ns = _make_absolute(subst(node["namespace"]))
        cmd += ["-r", f"__ns:={ns}"]
        full_name = ns.rstrip("/") + "/" + node["name"]
    for p in node["params"]:
        if "file" in p:
            path = subst(p["file"])
            if not os.path.isfile(path):  # launch_ros warns and drops it; we refuse
                raise SystemExit(f"params file {path} does not exist")
            cmd += ["--params-file", path]
        else:
            # evaluate_parameter_dict: each value is read as YAML (bool, int, float, str)
            values = {k: yaml.safe_load(subst(v)) for k, v in p["values"].items()}
            with tempfile.NamedTemporaryFile("w", prefix="launch_params_", dir=params_dir, delete=False) as f:
                yaml.dump({full_name: {"ros__parameters": values}}, f, default_flow_style=False)
            cmd += ["--params-file", f.name]
    for src, dst in node["remap_pairs"]:
        cmd += ["-r", f"{src}:={subst(dst)}"]
    return cmd


if __name__ == "__main__":
    if sys.argv[1] == "--command":
        prefix, params_dir, py, xml = sys.argv[2:6]
        launch_args = dict(a.split(":=", 1) for a in sys.argv[6:])
        print(json.dumps({"py": command_line(describe_py(py), prefix, launch_args, params_dir),
                          "xml": command_line(describe_xml(xml), prefix, launch_args, params_dir)}, indent=1))
    else:
        py, xml = sys.argv[1], sys.argv[2]
        print(json.dumps({"py": describe_py(py), "xml": describe_xml(xml)}, indent=1, sort_keys=True))
