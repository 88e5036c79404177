"""The web page served by :mod:`edgeaffect.demo.web` (kept in a module so it installs with the package).

Plain HTML + JS + canvas, no external assets: it must work offline on the device.
The token arrives once in the address (``?token=``); the server answers with an
HttpOnly cookie that the video and event requests carry, and the page drops the
token from the address bar so it is not left in history or screenshots.
``body`` data attributes count video and chart updates, which is also how the
headless-browser test checks that the page is live.  With several sources the
page adds a tile (video, bars, chart) per source; the first tile keeps the plain
ids (``video``, ``bars``, ``chart``), the others end in ``-N``.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeaffect demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
 header{padding:8px 14px;background:#222;font-size:15px} header span{color:#9c9;margin-left:12px}
 main{display:flex;flex-wrap:wrap;gap:14px;padding:14px} .tile{display:flex;flex-wrap:wrap;gap:14px;width:100%}
 .tile h3{width:100%;margin:0;font-size:14px;color:#9c9}
 #video{max-width:100%;border:1px solid #333;background:#000}
 #side{min-width:320px;flex:1}
 .bar{display:flex;align-items:center;margin:3px 0;font-size:13px}
 .bar b{width:110px;font-weight:normal} .bar i{display:block;height:12px;background:#4a4;margin-right:6px}
 .bar em{font-style:normal;color:#aaa}
 canvas#chart{width:100%;height:220px;background:#181818;border:1px solid #333}
 #faces{font-size:13px;color:#ccc;margin:6px 0}
</style></head>
<body data-video-updates="0" data-chart-updates="0">
<header>edgeaffect demo <span id="status">connecting...</span></header>
<main><section class="tile" id="tile">
 <div><img id="video" class="video" src="stream.mjpg" alt="annotated video"></div>
 <div id="side">
  <div id="faces">no face yet</div>
  <div id="bars"></div>
  <canvas id="chart" width="640" height="220"></canvas>
  <div id="legend" style="font-size:12px"></div>
 </div>
</section></main>
<script>
"use strict";
if(new URLSearchParams(location.search).has("token"))window.history.replaceState(null,"",location.pathname);  // "history" below is the chart's
const COLORS=["#e6194b","#3cb44b","#ffe119","#4363d8","#f58231","#911eb4","#46f0f0","#f032e6","#bcf60c","#fabebe"];
let labels=[], chartUpdates=0, videoUpdates=0;
const HIST=150, tiles=[{id:"", history:[], sig:null}];
function el(t,name){return document.getElementById(name+t.id);}
function setSources(names){  // one tile per source: a copy of the first with its ids suffixed "-N"
  if(names.length<2||tiles.length>1)return;
  const first=document.getElementById("tile");
  first.insertAdjacentHTML("afterbegin",`<h3>${names[0]}</h3>`);
  names.slice(1).forEach((name,k)=>{
    const n=k+1, t=first.cloneNode(true); t.id="tile-"+n;
    t.querySelectorAll("[id]").forEach(e=>{e.id=e.id+"-"+n;});
    t.querySelector("h3").textContent=name; t.querySelector("img").src="stream.mjpg?source="+n;
    first.parentNode.appendChild(t); tiles.push({id:"-"+n, history:[], sig:null});
  });
  setLabels(labels);
}
function setLabels(ls){
  labels=ls;
  tiles.forEach(t=>{
    const bars=el(t,"bars"); bars.innerHTML=""; const lg=el(t,"legend"); lg.innerHTML="";
    ls.forEach((l,i)=>{
      const d=document.createElement("div"); d.className="bar";
      d.innerHTML=`<b>${l}</b><i id="bar-${i}${t.id}" style="width:0px;background:${COLORS[i%COLORS.length]}"></i><em id="val-${i}${t.id}">-</em>`;
      bars.appendChild(d);
      lg.innerHTML+=`<span style="color:${COLORS[i%COLORS.length]};margin-right:8px">&#9632; ${l}</span>`;
    });
  });
}
function draw(t){
  const c=el(t,"chart"), g=c.getContext("2d");
  g.clearRect(0,0,c.width,c.height);
  g.strokeStyle="#333"; for(let y=0;y<=4;y++){g.beginPath();g.moveTo(0,y*c.height/4);g.lineTo(c.width,y*c.height/4);g.stroke();}
  labels.forEach((l,i)=>{
    g.strokeStyle=COLORS[i%COLORS.length]; g.lineWidth=2; g.beginPath();
    t.history.forEach((s,k)=>{const x=k*c.width/(HIST-1), v=s?(s[l]||0):0, y=c.height-v*c.height;
      if(k===0)g.moveTo(x,y); else g.lineTo(x,y);});
    g.stroke();
  });
}
function reading(face){  // the top class; multi-label: none on; valence-arousal: both values
  if(face.label!=null)return face.label;
  if(face.labels)return "no label above 0.5";
  return Object.entries(face.scores).map(([k,v])=>`${k} ${v.toFixed(2)}`).join("  ");
}
function onRecord(rec){
  const t=tiles[rec.source||0]; if(!t)return;
  const face=(rec.faces||[]).find(f=>f.scores&&Object.keys(f.scores).length);
  el(t,"faces").textContent=
    `frame ${rec.frame}  t=${rec.time.toFixed(2)}s  faces: ${(rec.faces||[]).length}`+
    (face?`  track #${face.track}: ${reading(face)}`:"");
  t.history.push(face?face.scores:null); if(t.history.length>HIST)t.history.shift();
  labels.forEach((l,i)=>{const v=face?(face.scores[l]||0):0;
    el(t,"bar-"+i).style.width=Math.round(180*v)+"px";
    el(t,"val-"+i).textContent=face?v.toFixed(2):"-";});
  draw(t); chartUpdates++; document.body.dataset.chartUpdates=chartUpdates;
}
function connect(){
  const es=new EventSource("events");
  es.addEventListener("labels",e=>{setLabels(JSON.parse(e.data));document.getElementById("status").textContent="live";});
  es.addEventListener("sources",e=>setSources(JSON.parse(e.data)));
  es.onmessage=e=>onRecord(JSON.parse(e.data));
  es.onerror=()=>{document.getElementById("status").textContent="reconnecting...";};
}
// Count real changes of the displayed video: sample the image into a tiny canvas and compare.
const probe=document.createElement("canvas"); probe.width=32; probe.height=24;
function checkVideo(){
  tiles.forEach(t=>{
    const img=el(t,"video");
    if(img.naturalWidth>0){  // a multipart stream never reports complete
      const g=probe.getContext("2d"); g.drawImage(img,0,0,32,24);
      const d=g.getImageData(0,0,32,24).data; let s=0; for(let i=0;i<d.length;i+=7)s=(s*31+d[i])>>>0;
      if(t.sig!==null&&s!==t.sig){videoUpdates++;document.body.dataset.videoUpdates=videoUpdates;}
      t.sig=s;
    }
  });
}
setInterval(checkVideo,100);
connect();
</script></body></html>
"""
