// One uPlot time-series chart; resized with its container (360 px phones included).
import { html, useRef, useEffect } from './lib.js';
import uPlot from '/vendor/uplot.mjs';

const dark = () => matchMedia('(prefers-color-scheme: dark)').matches;

export function Chart({ title, times, values, unit, color = '#2563eb' }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const el = box.current;
    const axis = dark() ? '#c9d1d9' : '#374151';
    const grid = dark() ? '#30363d' : '#e5e7eb';
    const opts = {
      width: Math.max(el.clientWidth, 200), height: 160, legend: { show: false }, cursor: { y: false },
      scales: { x: { time: true } },
      axes: [{ stroke: axis, grid: { stroke: grid } },
        { stroke: axis, grid: { stroke: grid }, size: 50, values: (u, vals) => vals.map((v) => `${+v.toFixed(2)}${unit}`) }],
      series: [{}, { label: title, stroke: color, width: 2, fill: `${color}22`, spanGaps: false }],
    };
    plot.current = new uPlot(opts, [times, values], el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(el.clientWidth, 200), height: 160 }));
    ro.observe(el);
    return () => { ro.disconnect(); plot.current?.destroy(); plot.current = null; };
  }, []);
  useEffect(() => { plot.current?.setData([times, values]); }, [times, values]);
  const last = values.length ? values[values.length - 1] : null;
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div ref=${box} class="plot" role="img" aria-label=${`${title}: chart over the chosen window${last == null ? '' : `, latest ${+last.toFixed(2)}${unit}`}`}></div>
  </figure>`;
}
