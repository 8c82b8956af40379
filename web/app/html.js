// Tagged-template JSX without a build step: html`<div class=${c}>…</div>` renders with Preact.
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
