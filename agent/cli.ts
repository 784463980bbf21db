#!/usr/bin/env node
import './lean-v8.js';
import { buildAgentProgram } from './program.js';

void buildAgentProgram().parseAsync(process.argv);
