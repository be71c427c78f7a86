"""Static reading of launch/eloss_perception.launch.{py,xml} (the launch
packages are not installable here). Prints JSON with what each file names:
declared arguments with defaults, the node's package/executable/name,
parameter files and inline parameter names, remaps, and LaunchConfiguration
references. The Rust test tests/launch_files.rs checks it against the node.
"""
import ast
import json
import re
import sys
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
            for p in getattr(kw.get("parameters"), "elts", []):
                if isinstance(p, ast.Dict):
                    node["param_names"] += [const(k) for k in p.keys]
                else:
                    node["param_files"].append(ast.unparse(p))
            remaps = kw.get("remappings")
            if isinstance(remaps, ast.Name):  # a list assigned above
                remaps = _assigned(tree, remaps.id)
            for r in getattr(remaps, "elts", []):
                node["remaps"].append(const(r.elts[0]))
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
                "arguments": _xml_words(n.get("args", ""))}
        for p in n.findall("param"):
            if p.get("from"):
                node["param_files"].append(p.get("from"))
            else:
                node["param_names"].append(p.get("name"))
        node["remaps"] = [r.get("from") for r in n.findall("remap")]
        out["nodes"].append(node)
    return out


if __name__ == "__main__":
    py, xml = sys.argv[1], sys.argv[2]
    print(json.dumps({"py": describe_py(py), "xml": describe_xml(xml)}, indent=1, sort_keys=True))
