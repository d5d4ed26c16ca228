"""The interactive circuit view (docs/study-a.md §9): one self-contained HTML page per task
and subset showing the main mode's top-ranked edges over the layer layout, with a slider over
the circuit size k and the evaluation-split faithfulness F at that size.

`payload` chooses what the page shows (the science: which edges, where the nodes sit, which
F belongs to which k); `render_html` turns it into a page with its data, script and style
inline, so that it opens offline (no network at view time, no CDN).

Edges: per direction, the first `top` edges of the ranking the circuit rule used
(circuits.ranking: |score| descending over the graph's edges, ties in graph order), so the
first k of them are the circuit of size k, and k = the minimal size reproduces minimal.json's
edges. Scores are signed (red positive, blue negative). F at k: the curve point of the
main mode, that direction, attribution circuits, evaluation split (with the minimal
circuit's evaluation F added at its size), with the largest size at or below k (`at[k]`
indexes it; None below the smallest point).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any

import polars as pl
import torch

from vermem.attribution import storage
from vermem.circuits import evaluation
from vermem.core.stats import nan_to_none
from vermem.core.vocabulary import DIRECTIONS

TOP = 500  # edges embedded per direction (more when a minimal circuit is larger)
INPUTS = {"q": "query", "k": "key", "v": "value"}


def node_of(destination: str) -> tuple[str, str]:
    """(node, input) of a destination name: 'a1.h2<k>' -> ('a1.h2', 'k'), 'm0' -> ('m0', '')."""
    if destination.endswith(">"):
        node, kind = destination[:-1].split("<")
        return node, kind
    return destination, ""


def layout(n_layers: int, n_heads: int) -> list[dict[str, Any]]:
    """Nodes with coordinates in grid units: x across (heads 0..H-1, the MLP one column to
    their right, input and logits centred over the heads), y up (input at 0, layer l's heads
    at 2l + 1, its MLP at 2l + 2, logits at 2L + 1)."""
    mid = (n_heads - 1) / 2
    nodes = [{"name": "input", "type": "input", "layer": None, "x": mid, "y": 0.0}]
    for layer in range(n_layers):
        nodes += [{"name": f"a{layer}.h{h}", "type": "head", "layer": layer, "x": float(h),
                   "y": 2.0 * layer + 1} for h in range(n_heads)]
        nodes.append({"name": f"m{layer}", "type": "mlp", "layer": layer,
                      "x": float(n_heads), "y": 2.0 * layer + 2})
    nodes.append({"name": "logits", "type": "logits", "layer": None, "x": mid,
                  "y": 2.0 * n_layers + 1})
    return nodes


def top_edges(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], direction: str,
              top: int) -> list[dict[str, Any]]:
    """The first `top` edges of `direction`'s ranking with names and signed scores; none for
    an empty attribution file."""
    if meta.get("empty") or "scores" not in tensors or "mask" not in tensors:
        return []
    scores = storage.direction_scores(tensors, direction).float()
    # circuits.ranking reads only the graph's edge mask: the file's mask is that graph's
    order = evaluation.ranking(SimpleNamespace(mask=tensors["mask"].bool()), scores)[:top]
    sources, destinations = meta["sources"], meta["destinations"]
    n_d = len(destinations)
    flat = scores.flatten()
    out = []
    for i in order.tolist():
        src, dst = sources[i // n_d], destinations[i % n_d]
        node, kind = node_of(dst)
        out.append({"name": f"{src}->{dst}", "source": src, "target": node, "input": kind,
                    "index": int(i), "score": float(flat[i])})
    return out


def curve_points(curve: pl.DataFrame, direction: str, main: Mapping[str, str]
                 ) -> list[dict[str, Any]]:
    """The main mode's evaluation-split curve of attribution circuits in `direction`, one
    point per size (the first row where a size repeats), by size."""
    if curve.is_empty():
        return []
    d = curve.filter((pl.col("split") == "evaluation") & (pl.col("circuit") == "attribution")
                     & (pl.col("direction") == direction)
                     & (pl.col("placement") == main["placement"])
                     & (pl.col("ablation") == main["ablation"]))
    d = d.unique("k", keep="first", maintain_order=True).sort("k")
    return [{"k": int(r["k"]), "f": _num(r["faithfulness"]), "lo": _num(r["faithfulness_lo"]),
             "hi": _num(r["faithfulness_hi"])} for r in d.iter_rows(named=True)]


# a float for JSON: None for a missing or non-finite value (JSON has no NaN or infinity)
_num = partial(nan_to_none, finite=True)


def at_or_below(points: Sequence[Mapping[str, Any]], n: int) -> list[int | None]:
    """For every k in 0..n the index into `points` (sorted by k) of the point with the
    largest size at or below k; None where every point is larger."""
    out: list[int | None] = []
    j = -1
    for k in range(n + 1):
        while j + 1 < len(points) and points[j + 1]["k"] <= k:
            j += 1
        out.append(j if j >= 0 else None)
    return out


def payload(minimal: Mapping[str, Any], curve: pl.DataFrame,
            tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any],
            main: Mapping[str, str], top: int = TOP) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data (see the module docstring)."""
    L, H = int(minimal["n_layers"]), int(minimal["n_heads"])
    chosen = {c["direction"]: c for c in minimal.get("circuits", [])
              if (c["placement"], c["ablation"]) == (main["placement"], main["ablation"])}
    n_all = int(minimal.get("n_edges") or 0)
    directions = {}
    for d in DIRECTIONS:
        c = chosen.get(d)
        k_min = int(c["k"]) if c else None
        n = min(n_all, max(top, k_min or 0)) if n_all else top
        edges = top_edges(tensors, meta, d, n)
        points = curve_points(curve, d, main)
        if c is not None and c.get("faithfulness") is not None \
                and all(q["k"] != k_min for q in points):
            # the minimal size is a search size (selection split only in the curve); its
            # evaluation F is minimal.json's
            points = sorted([*points, {"k": k_min, "f": _num(c["faithfulness"]),
                                       "lo": _num(c.get("faithfulness_lo")),
                                       "hi": _num(c.get("faithfulness_hi"))}],
                            key=lambda q: q["k"])
        directions[d] = {
            "edges": edges,
            "top_score": max((abs(e["score"]) for e in edges), default=0.0),
            "minimal_k": k_min,
            "minimal": None if c is None else {
                "k": k_min, "f": _num(c.get("faithfulness")),
                "lo": _num(c.get("faithfulness_lo")), "hi": _num(c.get("faithfulness_hi")),
                "semantics": c.get("semantics")},
            "curve": points,
            "at": at_or_below(points, len(edges)),
        }
    return {
        "model": minimal.get("model"), "task": minimal.get("task"),
        "subset": minimal.get("subset"), "n_layers": L, "n_heads": H, "n_edges": n_all,
        "metric": minimal.get("metric"), "rank_by": minimal.get("rank_by"),
        "target": minimal.get("target"), "n_pairs": minimal.get("n_pairs"),
        "main": dict(main), "default_direction": "noising",
        "nodes": layout(L, H), "directions": directions,
    }


def _json(data: Any) -> str:
    """JSON safe inside a <script> element (no '</' to close it early)."""
    return json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def render_html(data: Mapping[str, Any]) -> str:
    """The self-contained page: inline style, data and script; no external references."""
    title = (f"{data.get('model')}: {str(data.get('task', '')).replace('_', ' ')}, "
             f"{data.get('subset')}")
    return (_PAGE.replace("@TITLE@", html.escape(title))
            .replace("@DATA@", _json(data)))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>@TITLE@ - circuit view</title>
<style>
body{font:14px system-ui,sans-serif;margin:12px 18px;color:#222}
h1{font-size:17px;margin:0 0 6px}
#controls{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin:6px 0}
#controls input[type=range]{width:340px;margin:0}
#status{font-variant-numeric:tabular-nums}
#status b{font-size:15px}
.note{color:#666;font-size:12px}
#ticks{position:relative;height:14px;width:340px}
#ticks span{position:absolute;top:0;font-size:11px;color:#b35c00;white-space:nowrap;
 transform:translateX(-6px)}
#view{border:1px solid #ddd;background:#fcfcfc}
#tip{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:3px 6px;
 font-size:12px;display:none;box-shadow:1px 1px 3px #0003;white-space:nowrap}
.legend{font-size:12px;color:#444}
.legend i{display:inline-block;width:22px;height:3px;vertical-align:middle;margin:0 3px}
</style></head>
<body>
<h1>@TITLE@</h1>
<div class="note" id="about"></div>
<div id="controls">
 <label>direction <select id="direction"></select></label>
 <label for="k">k</label>
 <div><input type="range" id="k" min="0" value="0"><div id="ticks"></div></div>
 <button id="tomin" type="button">minimal size</button>
 <div id="status"></div>
</div>
<div class="legend"><i style="background:#c0392b"></i>positive score
 <i style="background:#2c6fbb"></i>negative score; width: |score|; into query solid,
 key dashed, value dotted. Hover a node or edge for its name and score.</div>
<div id="view"></div>
<div id="tip"></div>
<script id="payload" type="application/json">@DATA@</script>
<script>
(function(){
"use strict";
var P=JSON.parse(document.getElementById("payload").textContent);
var L=P.n_layers,H=P.n_heads,GX=70,GY=58,PAD=40;
var W=(H+1)*GX+2*PAD,HT=(2*L+1)*GY+2*PAD;
var pos={};
P.nodes.forEach(function(n){pos[n.name]=[PAD+n.x*GX+GX/2,HT-PAD-n.y*GY];});
function esc(s){return String(s).replace(/[&<>"]/g,function(c){
 return {"&":"&amp;","<":"&lt;",">":"&gt;","\\"":"&quot;"}[c];});}
function fmt(x){return x===null||x===undefined?"n/a":Number(x).toFixed(3);}
var sel=document.getElementById("direction"),slider=document.getElementById("k");
var status=document.getElementById("status"),view=document.getElementById("view");
var tip=document.getElementById("tip");
Object.keys(P.directions).forEach(function(d){
 var o=document.createElement("option");o.value=d;o.textContent=d+
  (P.directions[d].minimal_k===null?" (no minimal circuit)":"");sel.appendChild(o);});
sel.value=P.default_direction;
document.getElementById("about").textContent="main mode: placement "+P.main.placement+
 ", ablation "+P.main.ablation+"; edges ranked by |"+P.rank_by+"| attribution; "+
 P.n_edges+" edges in the graph; F on the "+P.n_pairs+" evaluation pairs (target "+
 P.target+"; memorized = threshold label: score at or above the subset's high threshold).";
function dir(){return P.directions[sel.value];}
function draw(){
 var D=dir(),k=+slider.value,top=D.top_score||1,parts=[],used={};
 var shown=D.edges.slice(0,k);
 for(var i=shown.length-1;i>=0;i--){var e=shown[i];
  var a=pos[e.source],b=pos[e.target];if(!a||!b)continue;
  used[e.source]=used[e.target]=1;
  var my=(a[1]+b[1])/2,bend=(e.input==="k"?8:e.input==="v"?-8:0);
  var d="M"+a[0]+","+a[1]+" C"+(a[0]+bend)+","+my+" "+(b[0]+bend)+","+my+" "+b[0]+","+b[1];
  var w=(0.6+4.5*Math.abs(e.score)/top).toFixed(2);
  var dash=e.input==="k"?' stroke-dasharray="6 3"':e.input==="v"?' stroke-dasharray="2 3"':"";
  parts.push('<path class="edge" data-i="'+i+'" d="'+d+'" fill="none" stroke="'+
   (e.score>0?"#c0392b":"#2c6fbb")+'" stroke-opacity="0.75" stroke-width="'+w+'"'+dash+
   '><title>'+esc(e.name)+" score "+e.score.toPrecision(4)+" (rank "+(i+1)+')</title></path>');}
 var nodes=[];
 P.nodes.forEach(function(n){var p=pos[n.name],on=!!used[n.name];
  var fill=on?"#222":"#bbb",r=on?7:4;
  var shape=n.type==="head"?'<circle cx="'+p[0]+'" cy="'+p[1]+'" r="'+r+'" fill="'+fill+'"/>':
   '<rect x="'+(p[0]-r-2)+'" y="'+(p[1]-r)+'" width="'+(2*r+4)+'" height="'+(2*r)+
   '" fill="'+fill+'"/>';
  var label=(on||n.type!=="head")?'<text x="'+(p[0]+9)+'" y="'+(p[1]-7)+
   '" font-size="10" paint-order="stroke" stroke="#fff" stroke-width="3" fill="'+
   (on?"#000":"#999")+'">'+esc(n.name)+'</text>':"";
  nodes.push('<g class="node" data-name="'+esc(n.name)+'">'+shape+label+'<title>'+
   esc(n.name)+'</title></g>');});
 var rows=[];for(var l=0;l<L;l++){rows.push('<text x="4" y="'+(HT-PAD-(2*l+1)*GY+4)+
  '" font-size="10" fill="#888">layer '+l+'</text>');}
 view.innerHTML='<svg id="circuit" width="'+W+'" height="'+HT+'" viewBox="0 0 '+W+" "+HT+
  '" data-drawn="'+P.nodes.length+'" data-edges="'+shown.length+'">'+rows.join("")+
  parts.join("")+nodes.join("")+"</svg>";
 var j=D.at[k],pt=(j===null||j===undefined)?null:D.curve[j];
 var f=pt===null?"F: no curve point at or below k":"F = <b>"+fmt(pt.f)+"</b> ["+fmt(pt.lo)+
  ", "+fmt(pt.hi)+"] at k = "+pt.k+(pt.k===k?"":" (nearest curve point at or below "+k+")");
 var m=D.minimal?("minimal size "+D.minimal.k+" (F "+fmt(D.minimal.f)+", "+
  D.minimal.semantics+")"):"no minimal circuit in this mode";
 status.innerHTML="k = <b>"+k+"</b> of "+D.edges.length+" shown; "+f+"; "+m;
 view.querySelectorAll(".edge").forEach(function(el){var e=D.edges[+el.dataset.i];
  el.addEventListener("mousemove",function(ev){show(ev,esc(e.name)+"<br>score "+
   e.score.toPrecision(4)+", rank "+(+el.dataset.i+1)+(e.input?", into "+e.input:""));});
  el.addEventListener("mouseleave",hide);});
 view.querySelectorAll(".node").forEach(function(el){var name=el.dataset.name;
  el.addEventListener("mousemove",function(ev){var s=0,c=0;shown.forEach(function(e){
   if(e.source===name||e.target===name){c++;s+=Math.abs(e.score);}});
   show(ev,esc(name)+"<br>"+c+" shown edges, sum |score| "+s.toPrecision(4));});
  el.addEventListener("mouseleave",hide);});
}
function show(ev,h){tip.innerHTML=h;tip.style.display="block";
 tip.style.left=(ev.clientX+12)+"px";tip.style.top=(ev.clientY+12)+"px";}
function hide(){tip.style.display="none";}
function reset(){var D=dir();slider.max=D.edges.length;
 slider.value=D.minimal_k===null?Math.min(10,D.edges.length):D.minimal_k;
 var t=document.getElementById("ticks");t.innerHTML="";
 if(D.minimal_k!==null&&D.edges.length){var s=document.createElement("span");
  s.textContent="\\u25B2 minimal "+D.minimal_k;
  s.style.left=(100*D.minimal_k/D.edges.length)+"%";t.appendChild(s);}
 document.getElementById("tomin").disabled=D.minimal_k===null;draw();}
sel.addEventListener("change",reset);slider.addEventListener("input",draw);
document.getElementById("tomin").addEventListener("click",function(){
 if(dir().minimal_k!==null){slider.value=dir().minimal_k;draw();}});
reset();
})();
</script>
</body></html>
"""
