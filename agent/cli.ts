#!/usr/bin/env node
import { buildAgentProgram } from './program.js';

void buildAgentProgram().parseAsync(process.argv);
